"""The file formats poolcli reads and writes: names and extensions.

Plain data, no NumPy: the command line reads it at start-up.

Every format here is written as well as read. Other images that Pillow can open (PSD, ICNS,
CUR, FITS, AVIF, ...) are read too; their output defaults to PNG (see ``pool_cli.io``).
"""

from __future__ import annotations

import os

from .core.errors import PoolError

_FORMAT_BY_EXTENSION = {
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".bmp": "bmp",
    ".webp": "webp",
    ".gif": "gif",
    ".ppm": "ppm",
    ".pgm": "ppm",
    ".pbm": "ppm",
    ".pnm": "ppm",
    ".tga": "tga",
    ".pcx": "pcx",
    ".sgi": "sgi",
    ".rgb": "sgi",
    ".rgba": "sgi",
    ".bw": "sgi",
    ".qoi": "qoi",
    ".dds": "dds",
    ".xbm": "xbm",
    ".ico": "ico",
    ".dib": "dib",
    ".jp2": "jpeg2000",
    ".j2k": "jpeg2000",
    ".npy": "npy",
    ".npz": "npz",
}

_EXTENSION_BY_FORMAT = {
    "png": ".png",
    "jpeg": ".jpg",
    "tiff": ".tif",
    "bmp": ".bmp",
    "webp": ".webp",
    "gif": ".gif",
    "ppm": ".ppm",
    # Pillow writes these exactly too (format names are Pillow's, lower-cased).
    "tga": ".tga",
    "pcx": ".pcx",
    "sgi": ".sgi",
    "qoi": ".qoi",
    "dds": ".dds",
    "xbm": ".xbm",
    "ico": ".ico",
    "dib": ".dib",
    "jpeg2000": ".jp2",
    "npy": ".npy",
    "npz": ".npz",
}

#: Format names accepted by ``--format``, image formats first.
FORMATS: tuple[str, ...] = tuple(_EXTENSION_BY_FORMAT)


def format_for_path(path: str) -> str | None:
    """Return the format a path's extension names, or None.

    Parameters
    ----------
    path : str
        A file name; only its extension (case-insensitive) matters.

    Returns
    -------
    str or None
        One of :data:`FORMATS`, or None for an unknown extension.

    Examples
    --------
    >>> format_for_path("photo.JPEG"), format_for_path("scan.pgm"), format_for_path("x.dat")
    ('jpeg', 'ppm', None)
    >>> format_for_path("sprite.tga"), format_for_path("scan.rgb"), format_for_path("x.psd")
    ('tga', 'sgi', None)
    """
    return _FORMAT_BY_EXTENSION.get(os.path.splitext(path)[1].lower())


def extension_for_format(fmt: str) -> str:
    """Return the usual file extension, dot included, for a format.

    Parameters
    ----------
    fmt : str
        One of :data:`FORMATS`.

    Returns
    -------
    str
        For example ``".png"``, ``".jpg"``, ``".tif"``.

    Raises
    ------
    PoolError
        For a format not in :data:`FORMATS`.

    Examples
    --------
    >>> extension_for_format("jpeg"), extension_for_format("npz")
    ('.jpg', '.npz')
    """
    return _EXTENSION_BY_FORMAT[_check_format(fmt)]


def _check_format(fmt: str) -> str:
    if fmt not in _EXTENSION_BY_FORMAT:
        raise PoolError(f"unknown output format {fmt!r} (choose one of {', '.join(FORMATS)})")
    return fmt
