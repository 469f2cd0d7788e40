"""Read inputs into NumPy arrays and write results back, atomically.

Inputs are images that Pillow reads, ``.npy`` and ``.npz`` files, or ``-`` for
standard input; the format is sniffed from the first bytes, then the file
extension names ``.npy``/``.npz``, and anything else is left to Pillow to
identify. 16-bit colour PNGs (which Pillow decodes to 8 bits per channel) are
read and written at 16 bits by this module. Outputs are written to a temporary
file beside the destination and renamed into place, so a failure never leaves a
half-written file behind.

Every user-facing failure raises :class:`~pool_cli.core.errors.PoolError` with a
one-line message that starts with the file name. Pillow is imported lazily so
that importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import errno
import io
import mmap
import os
import re
import stat
import struct
import sys
import warnings
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO, Callable, Iterable

import numpy as np

from pool_cli.core.errors import PoolError
from pool_cli.formats import (  # noqa: F401  (part of this module's API)
    FORMATS, _check_format, extension_for_format, format_for_path,
)

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "FORMATS",
    "Loaded",
    "extension_for_format",
    "format_for_path",
    "read_input",
    "write_output",
]

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),  # BigTIFF
    (b"MM\x00+", "tiff"),
    (b"\x93NUMPY", "npy"),
    (b"PK\x03\x04", "npz"),
    (b"PK\x05\x06", "npz"),  # a zip with no members: an empty .npz
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
)

# Enough for the PNG IHDR and a PPM header with a short comment.
_HEAD_SIZE = 512

# The array each Pillow mode is handed out as: dtype, and channel count (None: HW).
_MODE_DTYPE = {
    "1": np.dtype(bool),
    "L": np.dtype(np.uint8),
    "LA": np.dtype(np.uint8),
    "RGB": np.dtype(np.uint8),
    "RGBA": np.dtype(np.uint8),
    "CMYK": np.dtype(np.uint8),
    "I;16": np.dtype(np.uint16),
    "I": np.dtype(np.int32),
    "F": np.dtype(np.float32),
    # 16 bits per channel: poolcli's own names (Pillow has no such modes); PNG only.
    "LA;16": np.dtype(np.uint16),
    "RGB;16": np.dtype(np.uint16),
    "RGBA;16": np.dtype(np.uint16),
}
_MODE_CHANNELS = {"LA": 2, "RGB": 3, "RGBA": 4, "CMYK": 4, "LA;16": 2, "RGB;16": 3, "RGBA;16": 4}
_UINT8_MODE_BY_CHANNELS = {2: "LA", 3: "RGB", 4: "RGBA"}
_UINT16_MODE_BY_CHANNELS = {2: "LA;16", 3: "RGB;16", 4: "RGBA;16"}

# 16-bit colour PNGs: the rawmode Pillow decodes them with (keeping the high byte of each
# sample) -> poolcli's mode. See _deep_png_mode.
_DEEP_PNG_RAWMODES = {"RGB;16B": "RGB;16", "RGBA;16B": "RGBA;16", "LA;16B": "LA;16"}
_PNG_COLOUR_TYPES = {"LA;16": 4, "RGB;16": 2, "RGBA;16": 6}

_MODE_WORDS = {
    "1": "1-bit (mode 1) images",
    "L": "greyscale (mode L) images",
    "LA": "greyscale+alpha (mode LA) images",
    "RGB": "RGB images",
    "RGBA": "RGBA images (alpha)",
    "CMYK": "CMYK images",
    "I;16": "16-bit (mode I;16) images",
    "I": "32-bit integer (mode I) images",
    "F": "32-bit float (mode F) images",
    "LA;16": "16-bit greyscale+alpha (mode LA;16) images",
    "RGB;16": "16-bit RGB (mode RGB;16) images",
    "RGBA;16": "16-bit RGBA (mode RGBA;16) images",
}

# Modes each format stores and reads back with the same values. GIF takes RGB(A)
# only when the colours fit an exact palette, ICO only up to 256x256 (checked when
# writing). The 16-bit colour modes are written by _png16_encoder, the rest by Pillow.
_FORMAT_MODES = {
    "png": {"1", "L", "LA", "RGB", "RGBA", "I;16", "LA;16", "RGB;16", "RGBA;16"},
    "jpeg": {"L", "RGB", "CMYK"},
    "tiff": {"1", "L", "LA", "RGB", "RGBA", "CMYK", "I;16", "I", "F"},
    "bmp": {"1", "L", "RGB"},
    "webp": {"RGB", "RGBA"},
    "gif": {"L", "RGB", "RGBA"},
    "ppm": {"1", "L", "RGB", "I;16"},
    "tga": {"1", "L", "LA", "RGB", "RGBA"},
    "pcx": {"1", "L", "RGB"},
    "sgi": {"L", "RGB", "RGBA"},
    "qoi": {"RGB", "RGBA"},
    "dds": {"L", "LA", "RGB", "RGBA"},
    "xbm": {"1"},
    "ico": {"1", "L", "LA", "RGB", "RGBA"},
    "dib": {"1", "L", "RGB"},
    "jpeg2000": {"L", "LA", "RGB", "RGBA", "I;16"},
}
_ICC_FORMATS = {"png", "jpeg", "tiff", "webp"}
_ICO_MAX_SIDE = 256


def is_input_name(name: str) -> bool:
    """Whether a file found in a folder is an input: an extension poolcli writes, or one of
    an image format Pillow reads (PSD, ICNS, XPM, ...)."""
    if format_for_path(name):
        return True
    from PIL import Image

    pil_format = Image.registered_extensions().get(os.path.splitext(name)[1].lower())
    return pil_format in Image.OPEN  # not formats Pillow only writes (PDF)


def _numpy_decode_errors() -> tuple[type[BaseException], ...]:
    """What np.load raises on bad data (imported here: start-up time matters)."""
    import struct
    import zipfile
    import zlib

    return (ValueError, OSError, EOFError, zipfile.BadZipFile, NotImplementedError, zlib.error,
            struct.error)


@dataclass
class Loaded:
    """One input, decoded.

    Attributes
    ----------
    source : str
        The path as given, or ``"-"`` for standard input.
    format : str
        One of :data:`FORMATS`: the input's format, which results are written in by
        default. An image in a format poolcli does not write (PSD, ICNS, ...) says
        ``"png"`` (``"tiff"`` for modes PNG cannot hold): see :meth:`fallback_notes`.
    arrays : dict of {str or None: numpy.ndarray}
        ``None`` for a single image or ``.npy``; the member names, in file order,
        for ``.npz``. Arrays may be read-only (images, memory-mapped ``.npy``).
    layout : str or None
        ``"HW"`` or ``"HWC"`` for images; ``None`` for arrays (the caller picks
        the default for the number of dimensions).
    image_mode : str or None
        The Pillow mode the array corresponds to (after palette expansion):
        ``'1'``, ``'L'``, ``'LA'``, ``'RGB'``, ``'RGBA'``, ``'CMYK'``, ``'I;16'``,
        ``'I'`` or ``'F'``, or poolcli's own ``'LA;16'``, ``'RGB;16'``, ``'RGBA;16'`` for
        16 bits per channel (uint16, from PNG); ``None`` for arrays.
    icc_profile : bytes or None
        The image's embedded ICC profile, passed on when writing.
    nbytes : int
        Bytes read from disk or standard input.
    warnings : list of str
        One-line notes about the read, each naming the source.
    read_as : str or None
        The input's own format where `format` is a fallback (``"psd"``), else None.
    lossless : bool
        A losslessly coded WebP, which is written back losslessly too.
    """

    source: str
    format: str
    arrays: dict[str | None, np.ndarray]
    layout: str | None = None
    image_mode: str | None = None
    icc_profile: bytes | None = None
    nbytes: int = 0
    warnings: list[str] = field(default_factory=list)
    read_as: str | None = None
    lossless: bool = False

    def fallback_notes(self, fmt: str) -> list[str]:
        """The note for results written as ``fmt`` where that is the fallback for the input's
        own format (none when ``-o`` or ``--format`` chose another)."""
        if self.read_as is None or fmt != self.format:
            return []
        own = self.read_as.upper()
        why = (f"{own} cannot hold this image's mode ({self.image_mode})"
               if self.read_as in _FORMAT_MODES else f"{own} image, a format poolcli does not write")
        return [f"{self.source}: {why}: results go to {fmt.upper()} unless -o or --format "
                f"names another format"]


# ---------------------------------------------------------------------------
# Formats


def _sniff(head: bytes) -> str | None:
    """Name the format the first bytes of a file announce, if any."""
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if re.match(rb"P[1-7]\s", head):
        return "ppm"
    return None


# ---------------------------------------------------------------------------
# Reading


def read_input(
    source: str,
    *,
    stdin: BinaryIO | None = None,
    mmap_threshold: int = 256 * 2**20,
) -> Loaded:
    """Read an image, ``.npy`` or ``.npz`` file into arrays.

    Parameters
    ----------
    source : str
        A path, or ``"-"`` to read all of `stdin`.
    stdin : binary file, optional
        Where ``"-"`` reads from; default ``sys.stdin.buffer``.
    mmap_threshold : int, optional
        ``.npy`` files at least this many bytes are memory-mapped read-only
        instead of read into memory.

    Returns
    -------
    Loaded
        The arrays and what is known about them.

    Raises
    ------
    PoolError
        One line naming `source`: missing, unreadable, a directory, empty,
        unknown format, corrupt or truncated, over Pillow's decompression-bomb
        limit, or holding pickled (object) data.
    """
    if source == "-":
        data = (stdin if stdin is not None else sys.stdin.buffer).read()
        return _load_bytes(source, data, None)
    try:
        st = os.stat(source)
    except OSError as exc:
        raise _read_error(source, exc) from exc
    if stat.S_ISDIR(st.st_mode):
        raise PoolError(f"{source}: is a directory, not a file")
    try:
        if not stat.S_ISREG(st.st_mode):
            # Pipes and process substitution (<(...)) cannot be seeked: slurp them.
            with open(source, "rb") as f:
                return _load_bytes(source, f.read(), format_for_path(source))
        with open(source, "rb") as f:
            return _load_file(source, f, st.st_size, mmap_threshold)
    except OSError as exc:
        raise _read_error(source, exc) from exc


def _read_error(name: str, exc: OSError) -> PoolError:
    if isinstance(exc, FileNotFoundError):
        what = "no such file"
    elif isinstance(exc, PermissionError):
        what = "permission denied"
    elif isinstance(exc, IsADirectoryError):
        what = "is a directory, not a file"
    elif isinstance(exc, NotADirectoryError):
        what = "no such file (a parent is not a directory)"
    else:
        what = f"cannot read ({exc.strerror or exc})"
    return PoolError(f"{name}: {what}")


def _load_bytes(name: str, data: bytes, ext_fmt: str | None) -> Loaded:
    if not data:
        raise PoolError(f"{name}: empty input")
    head = data[:_HEAD_SIZE]
    return _decode(name, io.BytesIO(data), head, _detect(head, ext_fmt), len(data),
                   ext_fmt, mmap_path=None)


def _load_file(name: str, f: BinaryIO, size: int, mmap_threshold: int) -> Loaded:
    head = f.read(_HEAD_SIZE)
    if not head:
        raise PoolError(f"{name}: empty file")
    f.seek(0)
    ext_fmt = format_for_path(name)
    fmt = _detect(head, ext_fmt)
    mmap_path = name if fmt == "npy" and size >= mmap_threshold else None
    return _decode(name, f, head, fmt, size, ext_fmt, mmap_path=mmap_path)


def _detect(head: bytes, ext_fmt: str | None) -> str | None:
    """The format the magic bytes announce, else ``.npy``/``.npz`` by extension, else None:
    Pillow identifies the image (it knows formats without magic bytes, such as TGA)."""
    return _sniff(head) or (ext_fmt if ext_fmt in ("npy", "npz") else None)


def _decode(
    name: str, f: BinaryIO, head: bytes, fmt: str | None, nbytes: int, ext_fmt: str | None,
    *, mmap_path: str | None
) -> Loaded:
    if fmt == "npy":
        arrays = {None: _load_npy(name, f, head, mmap_path)}
        return Loaded(name, fmt, arrays, nbytes=nbytes)
    if fmt == "npz":
        return Loaded(name, fmt, _load_npz(name, f), nbytes=nbytes)
    return _load_image(name, f, head, fmt, nbytes, named=fmt is not None or ext_fmt is not None)


def _object_refusal(name: str) -> PoolError:
    return PoolError(f"{name}: object arrays are refused (pickled data is never loaded)")


def _is_pickle_refusal(exc: Exception) -> bool:
    text = str(exc).lower()
    return "pickle" in text or "python objects" in text


def _one_line(exc: object, limit: int = 200) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _load_npy(name: str, f: BinaryIO, head: bytes, mmap_path: str | None) -> np.ndarray:
    if not head.startswith(b"\x93NUMPY"):
        # np.load would try to unpickle anything without the .npy magic.
        if head[:1] == b"\x80":
            raise _object_refusal(name)
        raise PoolError(f"{name}: not a valid .npy file (no NUMPY header)")
    try:
        if mmap_path is not None:
            return np.load(mmap_path, mmap_mode="r", allow_pickle=False)
        return np.load(f, allow_pickle=False)
    except _numpy_decode_errors() as exc:
        if _is_pickle_refusal(exc):
            raise _object_refusal(name) from exc
        raise PoolError(f"{name}: corrupt or truncated .npy file ({_one_line(exc)})") from exc


def _load_npz(name: str, f: BinaryIO) -> dict[str | None, np.ndarray]:
    arrays: dict[str | None, np.ndarray] = {}
    try:
        with np.load(f, allow_pickle=False) as npz:
            for key in npz.files:
                value = npz[key]
                if not isinstance(value, np.ndarray):
                    raise PoolError(f"{name}: member {key!r} is not a .npy array")
                arrays[key] = value
    except PoolError:  # a ValueError too, but said already
        raise
    except _numpy_decode_errors() as exc:
        if _is_pickle_refusal(exc):
            raise _object_refusal(name) from exc
        raise PoolError(f"{name}: corrupt or truncated .npz file ({_one_line(exc)})") from exc
    if not arrays:
        raise PoolError(f"{name}: the .npz file holds no arrays")
    return arrays


def _load_image(name: str, f: BinaryIO, head: bytes, fmt: str | None, nbytes: int,
                named: bool = True) -> Loaded:
    """Decode an image. ``fmt`` is None when no magic bytes named it: Pillow's own name for
    the format is taken then. ``named``: the magic bytes or the extension said "image"."""
    im, frames, deep = _open_image(name, f, named)
    try:
        pil_format = im.format or ""
        seen_as = fmt or pil_format.lower()
        notes = [] if deep is not None else _precision_warnings(name, seen_as, head, im)
        if frames > 1:
            notes.append(f"{name}: {frames} frames; only the first is read")
        if deep is not None:
            arr, mode = _with_key_alpha(deep, im.info.get("transparency"))
        else:
            _scale_grey_key(im, seen_as, head)
            arr, mode = _image_array(name, im, seen_as)
        icc = im.info.get("icc_profile") or None
    finally:
        im.close()
    read_as = None
    if fmt is None:
        fmt = _output_format_for(pil_format, mode)
        read_as = pil_format.lower() if fmt != pil_format.lower() else None
    layout = "HW" if arr.ndim == 2 else "HWC"
    lossless = fmt == "webp" and _webp_is_lossless(f)
    return Loaded(name, fmt, {None: arr}, layout, mode, icc, nbytes, notes, read_as, lossless)


def _webp_is_lossless(f: BinaryIO) -> bool:
    """Whether a WebP's image is coded losslessly: a ``VP8L`` chunk, not ``VP8 ``, among the
    RIFF chunks (after ``VP8X``, ``ICCP``, ``ANIM``, ... in the extended format)."""
    f.seek(12)
    while True:
        header = f.read(8)
        if len(header) < 8:
            return False
        kind, size = header[:4], int.from_bytes(header[4:], "little")
        if kind in (b"VP8L", b"VP8 ", b"ANMF"):
            return kind == b"VP8L"
        f.seek(size + (size & 1), os.SEEK_CUR)  # chunks are padded to an even size


def _output_format_for(pil_format: str, mode: str) -> str:
    """The format an image Pillow identified is written back in by default: its own when
    poolcli writes it (and this Pillow can), else PNG (TIFF for modes PNG cannot hold)."""
    fmt = pil_format.lower()
    if fmt in _FORMAT_MODES and _pillow_writes(pil_format) and mode in _FORMAT_MODES[fmt]:
        return fmt
    return "png" if mode in _FORMAT_MODES["png"] else "tiff"


def _open_image(name: str, f: BinaryIO,
                named: bool = True) -> tuple[Image.Image, int, np.ndarray | None]:
    """Open, decode and orient an image; map every Pillow failure to PoolError.

    Returns the image, its number of frames, and for a 16-bit colour PNG (which the image
    holds at 8 bits per channel) the full uint16 array, oriented like the image.
    """
    from PIL import Image, ImageOps

    with warnings.catch_warnings():
        # Pillow only warns between 1x and 2x its limit; refuse both alike.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(f)
            frames = getattr(im, "n_frames", 1)
            if frames > 1:  # some plugins (SPIDER) refuse even seek(0) on a single image
                im.seek(0)
            deep_mode = _deep_png_mode(im)
            if deep_mode == "LA;16":
                # Each pixel's 4 bytes (grey high, low, alpha high, low) as they are.
                im.tile = [_with_rawmode(im.tile[0], "RGBA")]
            im.load()
            ImageOps.exif_transpose(im, in_place=True)
            deep = _deep_png_array(f, im, deep_mode) if deep_mode else None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _bomb_error(name, exc, Image.MAX_IMAGE_PIXELS) from exc
        except MemoryError:
            raise
        except Image.UnidentifiedImageError:
            if not named:
                raise PoolError(f"{name}: unknown format (not an image, .npy or .npz)") from None
            raise PoolError(f"{name}: not an image Pillow can read") from None
        except Exception as exc:  # Pillow raises many types on bad data
            raise PoolError(f"{name}: corrupt or truncated image ({_one_line(exc)})") from exc
    return im, frames, deep


# ---------------------------------------------------------------------------
# 16-bit colour PNG, read through Pillow's own decoder
#
# Pillow decodes RGB, RGBA and grey+alpha PNGs of 16 bits per channel with the rawmodes
# "RGB;16B", "RGBA;16B" and "LA;16B", which keep the high byte of each big-endian sample.
# The same data decoded with the little-endian rawmode ("RGB;16L") keeps the other byte,
# the low one: two decodes give every bit, through Pillow's unfiltering, Adam7
# de-interlacing and checks. "LA;16B" has no little-endian twin, but its 4 bytes per pixel
# are exactly what the 8-bit "RGBA" rawmode copies, in one decode.


def _deep_png_mode(im: Image.Image) -> str | None:
    """``'RGB;16'``, ``'RGBA;16'`` or ``'LA;16'`` for a 16-bit colour PNG not yet loaded."""
    if im.format != "PNG" or len(im.tile) != 1 or im.tile[0][0] != "zip":
        return None
    mode = _DEEP_PNG_RAWMODES.get(_tile_rawmode(im.tile[0]))
    if mode is None or im.mode != ("RGB" if mode == "RGB;16" else "RGBA"):
        return None
    return mode


def _tile_rawmode(tile) -> str | None:
    # A tile's args: the rawmode, or a tuple that starts with it (other Pillow versions).
    args = tile[3]
    if isinstance(args, tuple):
        args = args[0] if args else None
    return args if isinstance(args, str) else None


def _with_rawmode(tile, rawmode: str):
    """The tile (a plain tuple or Pillow's named tuple) decoded with another rawmode."""
    args = tile[3]
    args = (rawmode, *args[1:]) if isinstance(args, tuple) else rawmode
    fields = (*tile[:3], args, *tile[4:])
    return type(tile)(*fields) if hasattr(tile, "_fields") else fields


def _deep_png_array(f: BinaryIO, im: Image.Image, mode: str) -> np.ndarray:
    """The uint16 (H, W, C) samples of a 16-bit colour PNG, given ``im`` loaded from ``f``."""
    from PIL import Image, ImageOps

    data = np.asarray(im)
    if mode == "LA;16":  # bytes: grey high, grey low, alpha high, alpha low
        wide = data.astype(np.uint16)
        return (wide[..., 0::2] << 8) | wide[..., 1::2]
    f.seek(0)
    with Image.open(f) as low:
        low.tile = [_with_rawmode(low.tile[0], _tile_rawmode(low.tile[0]).replace(";16B", ";16L"))]
        low.load()
        ImageOps.exif_transpose(low, in_place=True)
        low_bytes = np.asarray(low)
    if low_bytes.shape != data.shape:  # cannot happen: the same file, decoded twice
        raise ValueError("the two decodes of the 16-bit PNG differ in shape")
    samples = data.astype(np.uint16)
    samples <<= 8
    samples |= low_bytes
    return samples


def _bomb_error(name: str, exc: Exception, limit: int | None) -> PoolError:
    found = re.search(r"\((\d+) pixels\)", str(exc))
    pixels = f"{found.group(1)} pixels" if found else "too many pixels"
    return PoolError(
        f"{name}: image exceeds Pillow's decompression-bomb limit ({pixels}, limit {limit})"
    )


def _image_array(name: str, im: Image.Image, fmt: str) -> tuple[np.ndarray, str]:
    """Return the array for a decoded image and the mode it corresponds to."""
    mode = im.mode
    # PNG and PGM hold at most 16 bits; some Pillow versions hand them out as I
    if mode in ("I;16", "I;16B", "I;16L", "I;16N") or (mode == "I" and fmt in ("png", "ppm")):
        return _with_key_alpha(np.asarray(im).astype(np.uint16, copy=False),
                               im.info.get("transparency"))
    if mode not in _MODE_DTYPE or (mode in ("1", "L", "RGB") and "transparency" in im.info):
        im = _to_common_mode(name, im)  # a colour key (tRNS) becomes an alpha channel
    if fmt == "tiff" and im.mode in ("L", "I"):
        return _tiff_samples(im, np.asarray(im)), im.mode
    return np.asarray(im), im.mode


# A TIFF's (SampleFormat, BitsPerSample) -> its samples' dtype (SampleFormat 1: unsigned,
# 2: signed, 3: float).
_TIFF_SAMPLE_DTYPES = {(kind, 8 * np.dtype(t).itemsize): np.dtype(t) for kind, types in (
    (1, (np.uint8, np.uint16, np.uint32)), (2, (np.int8, np.int16, np.int32)))
    for t in types}


def _tiff_samples(im: Image.Image, arr: np.ndarray) -> np.ndarray:
    """One-channel TIFF samples in the file's own dtype: Pillow hands int8 out as L (uint8)
    and uint32 as I (int32), the same bits, and int16 as I, the same values."""
    def first(tag, default):
        value = im.tag_v2.get(tag, default)
        return value[0] if isinstance(value, tuple) else value

    dtype = _TIFF_SAMPLE_DTYPES.get((first(339, 1), first(258, 1)))
    if dtype is None or dtype == arr.dtype:
        return arr
    return arr.view(dtype) if dtype.itemsize == arr.itemsize else arr.astype(dtype)


def _scale_grey_key(im: Image.Image, fmt: str, head: bytes) -> None:
    """Pillow scales the samples of a 2- or 4-bit grey PNG up to 0..255, but not its colour
    key (at 1 bit it scales both): scaled alike, the key finds its pixels again."""
    key = im.info.get("transparency")
    if (fmt == "png" and isinstance(key, int) and len(head) >= 26 and head[12:16] == b"IHDR"
            and head[25] == 0 and head[24] in (2, 4)):
        im.info["transparency"] = key * (255 // (2 ** head[24] - 1))


def _with_key_alpha(samples: np.ndarray, key) -> tuple[np.ndarray, str]:
    """A 16-bit PNG's samples and mode; with a colour key (tRNS: a grey value or an RGB
    triple), an alpha channel is added, 0 where the pixel is that colour, as for 8-bit images."""
    grey = samples.ndim == 2
    if key is None or not (grey or samples.shape[2] == 3):
        return samples, "I;16" if grey else _UINT16_MODE_BY_CHANNELS[samples.shape[2]]
    keyed = samples == key if grey else np.all(samples == np.asarray(key, np.uint16), axis=2)
    alpha = np.where(keyed, np.uint16(0), np.uint16(65535))
    return np.dstack([samples, alpha]), "LA;16" if grey else "RGBA;16"


def _to_common_mode(name: str, im: Image.Image) -> Image.Image:
    """Convert palette and exotic modes (P, YCbCr, LAB, RGBX, ...) to RGB or RGBA."""
    if im.mode == "La":
        target = "LA"
    elif im.mode in ("1", "L") and "transparency" in im.info:
        target = "LA"
    else:
        # Covers alpha modes (PA, RGBa) and palette or tRNS transparency alike.
        target = "RGBA" if im.has_transparency_data else "RGB"
    try:
        return im.convert(target)
    except ValueError as exc:
        raise PoolError(f"{name}: image mode {im.mode} is not supported ({exc})") from exc


def _precision_warnings(name: str, fmt: str, head: bytes, im: Image.Image) -> list[str]:
    """Note images whose 16-bit samples Pillow reduces to 8 bits.

    16-bit colour PNGs are read in full (:func:`_deep_png_array`); the PNG case here is a
    safety net should Pillow hand one out in an unexpected way.
    """
    bits, what = 8, "colour"
    if fmt == "png" and head[12:16] == b"IHDR" and len(head) >= 26:
        if head[25] in (2, 4, 6):  # RGB, grey+alpha, RGBA
            bits = head[24]
    elif fmt == "tiff" and im.mode in ("LA", "RGB", "RGBA", "CMYK", "P", "PA"):
        sample_bits = im.tag_v2.get(258, 8)
        bits = max(sample_bits) if isinstance(sample_bits, tuple) else int(sample_bits)
    elif fmt == "ppm" and im.mode == "RGB":
        bits = _ppm_bits(head)
    elif fmt == "sgi" and head[:2] == b"\x01\xda" and len(head) > 3 and head[3] == 2:
        bits, what = 16, "colour" if im.mode in ("RGB", "RGBA") else "grey"
    elif fmt == "jpeg2000" and im.mode in ("LA", "RGB", "RGBA"):
        bits = _jpeg2000_bits(head)
    if bits <= 8:
        return []
    return [
        f"{name}: {bits}-bit {what} read as 8 bits per channel by Pillow: "
        "precision lost (to keep all bits, convert the file to .npy with another tool first)"
    ]


def _jpeg2000_bits(head: bytes) -> int:
    """Bits per sample of a JPEG 2000 file: the JP2 header box's BPC, or the first
    component's Ssiz in a raw codestream's SIZ marker (8 when neither is in ``head``)."""
    box = head.find(b"ihdr")
    if box >= 0 and len(head) > box + 14:
        return (head[box + 14] & 0x7F) + 1  # after height, width (4 bytes each), components (2)
    if head[:4] == b"\xff\x4f\xff\x51" and len(head) > 42:
        return (head[42] & 0x7F) + 1
    return 8


def _ppm_bits(head: bytes) -> int:
    tokens = re.sub(rb"#[^\n]*", b" ", head).split()
    if len(tokens) < 4 or tokens[0] not in (b"P3", b"P6") or not tokens[3].isdigit():
        return 8
    return int(tokens[3]).bit_length()


# ---------------------------------------------------------------------------
# Writing


def write_output(
    dest: str,
    arrays: dict[str | None, np.ndarray],
    *,
    fmt: str,
    like: Loaded,
    overwrite: bool = False,
    jpeg_quality: int = 95,
    png_compression: int = 6,
    stdout: BinaryIO | None = None,
) -> list[str]:
    """Encode arrays and write them to a file, atomically, or to standard output.

    Parameters
    ----------
    dest : str
        The output path, or ``"-"`` for `stdout`.
    arrays : dict of {str or None: numpy.ndarray}
        One array for ``npy`` and image formats; any number for ``npz`` (a
        ``None`` key is stored as ``arr_<i>``).
    fmt : str
        One of :data:`FORMATS`.
    like : Loaded
        The input the arrays came from. When it was an image, the result is
        written back in its mode and bit depth (floats rounded to nearest, ties
        up, and clipped); its ICC profile is kept where the format can hold it.
    overwrite : bool, optional
        Replace an existing `dest`; otherwise an existing `dest` is an error.
    jpeg_quality : int, optional
        1-100, for JPEG and WebP.
    png_compression : int, optional
        zlib level 0-9 for PNG.
    stdout : binary file, optional
        Where ``"-"`` writes; default ``sys.stdout.buffer``.

    Returns
    -------
    list of str
        One-line notes naming `dest` (values clipped, ICC profile dropped).

    Raises
    ------
    PoolError
        One line naming `dest`: the format cannot hold the data exactly, the
        output exists, or it cannot be written. Nothing is left behind.
    """
    _check_format(fmt)
    _check_quality(jpeg_quality, png_compression)
    notes: list[str] = []
    _emit(dest, fmt, _encoder(dest, arrays, fmt, like, notes, jpeg_quality, png_compression),
          overwrite, stdout)
    return notes


def _emit(dest: str, fmt: str, encode, overwrite: bool, stdout: BinaryIO | None) -> None:
    """Run ``encode`` into ``dest``: atomically, or whole into a buffer first for ``"-"``
    (nothing half-written on failure)."""
    if dest != "-":
        _write_atomically(dest, fmt, encode, overwrite)
        return
    data = _encoded(dest, fmt, encode)
    try:
        _write_all(stdout if stdout is not None else sys.stdout.buffer, data)
    except BrokenPipeError:
        raise PoolError("cannot write: the output's reader went away") from None


def _write_all(out: BinaryIO, data: bytes) -> None:
    """All of ``data`` into ``out``: a buffered write into a pipe whose reader leaves midway
    returns what it wrote so far, without an error, so the rest is written again (and then
    raises BrokenPipeError)."""
    rest = memoryview(data)
    while rest:
        written = out.write(rest)
        if not written:
            raise BrokenPipeError(errno.EPIPE, "nothing more could be written")
        rest = rest[written:]
    out.flush()


def _encoded(dest: str, fmt: str, encode: Encoder) -> bytes:
    """The whole encoding, in memory: for standard output and devices, which cannot seek (as
    encoders may) and must not get half an output."""
    buffer = io.BytesIO()
    _run_encoder(dest, fmt, encode, buffer)
    return buffer.getvalue()


def _check_quality(jpeg_quality: int, png_compression: int) -> None:
    if not 1 <= jpeg_quality <= 100:
        raise PoolError(f"JPEG quality must be between 1 and 100 (got {jpeg_quality})")
    if not 0 <= png_compression <= 9:
        raise PoolError(f"PNG compression must be between 0 and 9 (got {png_compression})")


Encoder = Callable[[BinaryIO], None]


def _encoder(
    dest: str,
    arrays: dict[str | None, np.ndarray],
    fmt: str,
    like: Loaded,
    notes: list[str],
    jpeg_quality: int,
    png_compression: int,
) -> Encoder:
    """Check and convert the data up front, so nothing touches the disk before it fits."""
    if fmt == "npz":
        if not arrays:
            raise PoolError(f"{dest}: no arrays to write")
        return lambda f: _write_npz(f, arrays)
    arr = _single(dest, arrays, fmt)
    if fmt == "npy":
        return lambda f: np.save(f, arr, allow_pickle=False)
    arr, mode = _image_data(dest, arr, fmt, like.image_mode, notes)
    if fmt == "ico" and max(arr.shape[:2]) > _ICO_MAX_SIDE:
        raise PoolError(f"{dest}: ICO holds at most {_ICO_MAX_SIDE}x{_ICO_MAX_SIDE} pixels, "
                        f"not {arr.shape[1]}x{arr.shape[0]}; use .png")
    params = _save_params(dest, fmt, like.icc_profile, notes, jpeg_quality, png_compression)
    if fmt == "webp" and like.lossless:
        params["lossless"] = True
    if mode in _PNG_COLOUR_TYPES:  # 16 bits per channel: Pillow cannot encode it
        return _png16_encoder(dest, arr, mode, params.get("icc_profile"), png_compression)
    im, pil_params = _pil_image(dest, arr, mode, fmt)
    params.update(pil_params)
    if fmt == "ico":  # one image at its own size, not Pillow's set of downscaled icons
        params["sizes"] = [im.size]
    pil_format = fmt.upper()
    if not _pillow_writes(pil_format):
        raise PoolError(f"{dest}: this Pillow cannot write {pil_format}; use .png or .npy")
    return lambda f: im.save(f, format=pil_format, **params)


def _pillow_writes(pil_format: str) -> bool:
    """Whether this Pillow can save ``pil_format`` (``"TGA"``)."""
    from PIL import Image

    Image.preinit()  # the common formats; all of Pillow's plugins only if need be
    if pil_format not in Image.SAVE:
        Image.init()
    return pil_format in Image.SAVE


def _single(dest: str, arrays: dict[str | None, np.ndarray], fmt: str) -> np.ndarray:
    if len(arrays) != 1:
        raise PoolError(
            f"{dest}: {fmt.upper()} holds one array but there are {len(arrays)}; use .npz"
        )
    return np.asanyarray(next(iter(arrays.values())))


def _write_npz(f: BinaryIO, arrays: dict[str | None, np.ndarray]) -> None:
    # Written by hand rather than np.savez(**arrays): keys such as "file" or
    # "allow_pickle" would collide with np.savez's own parameters.
    import zipfile

    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for i, (key, arr) in enumerate(arrays.items()):
            member = f"arr_{i}" if key is None else key
            with zf.open(member + ".npy", "w", force_zip64=True) as out:
                np.lib.format.write_array(out, np.asanyarray(arr), allow_pickle=False)


def _image_data(
    dest: str, arr: np.ndarray, fmt: str, like_mode: str | None, notes: list[str]
) -> tuple[np.ndarray, str]:
    """Return the array cast to the dtype of the image mode it will be saved as."""
    arr, mode = _image_mode(dest, arr, fmt, like_mode)
    if not _fits_mode(arr, mode):
        raise PoolError(
            f"{dest}: an array of shape {arr.shape} does not fit a mode {mode} image; use .npy"
        )
    if mode not in _FORMAT_MODES[fmt]:
        raise _unfit_error(dest, fmt, _MODE_WORDS[mode], mode)
    return _cast(dest, arr, mode, fmt, notes), mode


def _image_mode(dest: str, arr: np.ndarray, fmt: str,
                like_mode: str | None) -> tuple[np.ndarray, str]:
    """The array as an image holds it (one channel dropped) and the mode it is saved in."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    return arr, like_mode if like_mode is not None else _mode_for_array(dest, arr, fmt)


def _fits_mode(arr: np.ndarray, mode: str) -> bool:
    channels = _MODE_CHANNELS.get(mode)
    if channels is None:
        return arr.ndim == 2
    return arr.ndim == 3 and arr.shape[2] == channels


def _mode_for_array(dest: str, arr: np.ndarray, fmt: str) -> str:
    """Pick the image mode that holds an array's dtype and shape exactly."""
    dtype = arr.dtype
    if arr.ndim == 3 and dtype == np.uint8 and arr.shape[2] in _UINT8_MODE_BY_CHANNELS:
        return _UINT8_MODE_BY_CHANNELS[arr.shape[2]]
    if arr.ndim == 3 and dtype == np.uint16 and arr.shape[2] in _UINT16_MODE_BY_CHANNELS:
        return _UINT16_MODE_BY_CHANNELS[arr.shape[2]]
    if arr.ndim == 2:
        if dtype == bool:
            return "1"
        if dtype == np.uint8:
            return "L"
        if dtype == np.uint16:
            return "I;16"
        if dtype.kind in "iu" and np.can_cast(dtype, np.int32, "safe"):
            return "I"
        if dtype.kind == "f" and np.can_cast(dtype, np.float32, "safe"):
            return "F"
    raise _unfit_error(dest, fmt, f"{dtype} data of shape {arr.shape}", None)


def _unfit_error(dest: str, fmt: str, what: str, mode: str | None) -> PoolError:
    homes = [
        extension_for_format(other)
        for other in ("png", "tiff")
        if mode is not None and mode in _FORMAT_MODES[other] and other != fmt
    ]
    homes.append(".npy")
    return PoolError(
        f"{dest}: {fmt.upper()} cannot hold {what} exactly; use {' or '.join(homes)}"
    )


def _cast(dest: str, arr: np.ndarray, mode: str, fmt: str, notes: list[str]) -> np.ndarray:
    """Cast to the mode's dtype: floats rounded (ties up) and clipped; ints only if lossless."""
    want = _MODE_DTYPE[mode]
    if arr.dtype == want:
        return arr
    kind = arr.dtype.kind
    if kind == "f" and want.kind == "f":
        return arr.astype(want)
    if kind == "f":
        if np.isnan(arr).any():
            raise PoolError(f"{dest}: mode {mode} cannot store the NaN in the result; use .npy")
        if want == bool:  # rounded, then anything above 1 clipped (and said), as for sums
            return _clip(dest, np.floor(arr + 0.5), np.dtype(np.uint8), notes, high=1).astype(bool)
        return _round_and_clip(dest, arr, want, notes)
    if kind in "biu" and want == bool:
        return _clip(dest, arr, np.dtype(np.uint8), notes, high=1).astype(bool)
    if kind in "biu":
        return _clip(dest, arr, want, notes)  # e.g. the int64 sums of an image
    raise PoolError(
        f"{dest}: {arr.dtype} values cannot be written as a mode {mode} {fmt.upper()} "
        f"({want}) without loss; use .npy"
    )


def _round_and_clip(dest: str, arr: np.ndarray, want: np.dtype, notes: list[str]) -> np.ndarray:
    # floor(x + 0.5) rounds ties up, as Pillow's reduce() and OpenCV's INTER_AREA do.
    return _clip(dest, np.floor(arr + 0.5), want, notes)


def _clip(dest: str, rounded: np.ndarray, want: np.dtype, notes: list[str],
          high: int | None = None) -> np.ndarray:
    """Clip whole numbers to the range of ``want`` (or 0..``high``), noting how many did not fit."""
    info = np.iinfo(want)
    low, high = info.min, info.max if high is None else high
    clipped = int(np.count_nonzero((rounded < low) | (rounded > high)))
    if clipped:
        notes.append(f"{dest}: {clipped} values outside {low}..{high} clipped")
        rounded = np.clip(rounded, low, high)
    return rounded.astype(want)


def _pil_image(dest: str, arr: np.ndarray, mode: str, fmt: str) -> tuple[Image.Image, dict]:
    from PIL import Image

    arr = np.ascontiguousarray(arr)
    if fmt == "gif" and mode != "L":
        return _gif_palette_image(dest, arr, mode)
    if mode == "CMYK":  # fromarray would take 4 channels for RGBA
        return Image.frombytes("CMYK", (arr.shape[1], arr.shape[0]), arr.tobytes()), {}
    return Image.fromarray(arr), {}


def _gif_palette_image(dest: str, arr: np.ndarray, mode: str) -> tuple[Image.Image, dict]:
    """Build an exact palette image; GIF cannot hold more than that."""
    from PIL import Image

    colours, index = np.unique(arr.reshape(-1, arr.shape[2]), axis=0, return_inverse=True)
    params: dict = {}
    if mode == "RGBA":
        alpha = colours[:, 3]
        clear = np.flatnonzero(alpha == 0)
        if not np.all((alpha == 0) | (alpha == 255)) or len(clear) > 1:
            raise PoolError(
                f"{dest}: GIF holds only opaque colours and one fully transparent colour; use .png"
            )
        if len(clear):
            params["transparency"] = int(clear[0])
    if len(colours) > 256:
        raise PoolError(f"{dest}: GIF holds at most 256 colours, not {len(colours)}; use .png")
    im = Image.fromarray(index.reshape(arr.shape[:2]).astype(np.uint8), "P")
    im.putpalette(colours[:, :3].tobytes(), "RGB")
    # Pillow would otherwise renumber and trim the palette.
    params["optimize"] = False
    return im, params


def _save_params(
    dest: str,
    fmt: str,
    icc_profile: bytes | None,
    notes: list[str],
    jpeg_quality: int,
    png_compression: int,
) -> dict:
    params: dict = {}
    if fmt in ("jpeg", "webp"):
        params["quality"] = jpeg_quality
    if fmt == "png":
        params["compress_level"] = png_compression
    if fmt == "jpeg2000" and dest.lower().endswith((".j2k", ".j2c")):
        params["no_jp2"] = True  # a raw codestream (Pillow names it by the file, unseen here)
    if icc_profile and fmt in _ICC_FORMATS:
        params["icc_profile"] = icc_profile
    elif icc_profile:
        notes.append(f"{dest}: {fmt.upper()} cannot hold the ICC profile; it was dropped")
    return params


# ---------------------------------------------------------------------------
# 16-bit colour PNG, written here (Pillow has no 16-bit colour modes)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_BAND_BYTES = 1 << 20  # raw bytes filtered at once: bounded memory for large images
_PNG_IDAT_BYTES = 1 << 20  # compressed bytes per IDAT chunk


def _png16_encoder(dest: str, arr: np.ndarray, mode: str, icc_profile: bytes | None,
                   level: int) -> Encoder:
    """An encoder writing ``arr`` (uint16, H x W x C) as a PNG of 16 bits per channel."""
    height, width = arr.shape[:2]
    if not (0 < height < 2**31 and 0 < width < 2**31):
        raise PoolError(f"{dest}: PNG cannot hold an image of {width}x{height} pixels; use .npy")
    colour_type = _PNG_COLOUR_TYPES[mode]
    return lambda f: _write_png16(f, arr, colour_type, icc_profile, level)


def _write_png16(f: BinaryIO, arr: np.ndarray, colour_type: int, icc_profile: bytes | None,
                 level: int) -> None:
    """Signature, IHDR, iCCP (if a profile), IDAT (rows filtered, then zlib at ``level``),
    IEND. Each row takes the filter whose output has the least sum of absolute values, as
    libpng chooses; level 0 stores rows unfiltered."""
    height, width, channels = arr.shape
    f.write(_PNG_SIGNATURE)
    _png_chunk(f, b"IHDR", struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0))
    if icc_profile:
        # Profile name, NUL, compression method 0 (zlib), the compressed profile.
        _png_chunk(f, b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc_profile))
    bpp = 2 * channels
    row_bytes = width * bpp
    band = max(1, _PNG_BAND_BYTES // row_bytes)
    compressor = zlib.compressobj(level)
    pending = bytearray()
    prior = np.zeros(row_bytes, np.uint8)
    for top in range(0, height, band):
        raw = np.ascontiguousarray(arr[top:top + band], dtype=">u2").view(np.uint8)
        raw = raw.reshape(-1, row_bytes)
        pending += compressor.compress(_png_filter(raw, prior, bpp, adaptive=level > 0))
        prior = raw[-1]
        _png_idat(f, pending, keep_last=True)
    pending += compressor.flush()
    _png_idat(f, pending, keep_last=False)
    _png_chunk(f, b"IEND", b"")


def _png_idat(f: BinaryIO, pending: bytearray, keep_last: bool) -> None:
    """Write ``pending`` compressed bytes as IDAT chunks of ``_PNG_IDAT_BYTES``, and all that
    is left unless ``keep_last`` (then it waits for more); ``pending`` is emptied as written."""
    while len(pending) >= _PNG_IDAT_BYTES or (pending and not keep_last):
        _png_chunk(f, b"IDAT", bytes(pending[:_PNG_IDAT_BYTES]))
        del pending[:_PNG_IDAT_BYTES]


def _png_chunk(f: BinaryIO, kind: bytes, data: bytes) -> None:
    f.write(struct.pack(">I", len(data)) + kind)
    f.write(data)
    f.write(struct.pack(">I", zlib.crc32(data, zlib.crc32(kind))))


def _png_filter(raw: np.ndarray, prior: np.ndarray, bpp: int, adaptive: bool) -> bytes:
    """Filter rows of bytes (``prior``: the row above the first), each led by its filter type.

    Filtering only looks at unfiltered bytes, so every row of every filter is computed at
    once; uint8 arithmetic wraps modulo 256 as the PNG filters do.
    """
    rows, length = raw.shape
    out = np.empty((rows, length + 1), np.uint8)
    if not adaptive:
        out[:, 0] = 0
        out[:, 1:] = raw
        return out.tobytes()
    up = np.empty_like(raw)  # b: the byte above
    up[0] = prior
    up[1:] = raw[:-1]
    left = np.zeros_like(raw)  # a: the byte bpp to the left
    left[:, bpp:] = raw[:, :-bpp]
    corner = np.zeros_like(raw)  # c: the byte above that one
    corner[:, bpp:] = up[:, :-bpp]
    average = (left >> 1) + (up >> 1) + (left & up & 1)  # floor((a + b) / 2), in uint8
    candidates = [raw, raw - left, raw - up, raw - average, raw - _paeth(left, up, corner)]
    costs = np.stack([_filter_cost(c) for c in candidates])
    best = np.argmin(costs, axis=0)  # the first of equal costs: the simpler filter
    out[:, 0] = best
    for kind, filtered in enumerate(candidates):
        chosen = best == kind
        if chosen.any():
            out[chosen, 1:] = filtered[chosen]
    return out.tobytes()


def _paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """The Paeth predictor: of a, b, c the nearest to p = a + b - c (ties: a, then b)."""
    c16 = c.astype(np.int16)
    pa = b.astype(np.int16) - c16  # p - a
    pb = a.astype(np.int16) - c16  # p - b
    pc = np.abs(pa + pb)  # |p - c|
    np.abs(pa, out=pa)
    np.abs(pb, out=pb)
    out = np.where(pb <= pc, b, c)
    np.copyto(out, a, where=(pa <= pb) & (pa <= pc))
    return out


# |x| of a byte x read as a signed int8.
_SIGNED_MAGNITUDE = np.minimum(np.arange(256), 256 - np.arange(256)).astype(np.uint8)


def _filter_cost(filtered: np.ndarray) -> np.ndarray:
    """Per row, the sum of the bytes' absolute values read as signed (libpng's heuristic)."""
    return np.take(_SIGNED_MAGNITUDE, filtered).sum(axis=1, dtype=np.int64)


def writes_in_place(path: str) -> bool:
    """Whether ``path`` is (or links to) a device or a FIFO, such as ``/dev/null``: written to
    as it is, never replaced by a file (nothing there can be half-written or lost)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def _write_in_place(dest: str, data: bytes) -> None:
    """Write a whole output into a device or a FIFO. A FIFO is opened without blocking first:
    with no reader it would wait forever, past any signal, in a worker thread."""
    try:
        fd = os.open(dest, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise PoolError(f"{dest}: cannot write (a named pipe with no reader)") from exc
        raise _write_error(dest, exc) from exc
    try:
        with os.fdopen(fd, "wb") as f:  # closes fd whatever happens
            os.set_blocking(fd, True)
            f.write(data)
    except OSError as exc:
        raise _write_error(dest, exc) from exc


def _write_atomically(dest: str, fmt: str, encode: Encoder, overwrite: bool) -> None:
    if os.path.isdir(dest):
        raise PoolError(f"{dest}: is a directory")
    if writes_in_place(dest):
        _write_in_place(dest, _encoded(dest, fmt, encode))
        return
    if not overwrite and os.path.lexists(dest):
        raise _exists_error(dest)
    linked = os.path.islink(dest)
    if linked:  # replace the file it names; the link stays
        dest = os.path.realpath(dest)
    parent = os.path.dirname(dest) or "."
    # a link's target is written where it points, as `>` would, never into new folders
    created = [] if linked else _missing_folders(parent)
    attempted: list[str] = []  # temporary files this write may have made
    try:
        try:
            if not linked:
                os.makedirs(parent, exist_ok=True)
            try:
                fd = _create_temp(parent, os.path.basename(dest), attempted)
            except FileNotFoundError:  # another write's failure removed the new folder meanwhile
                if linked:
                    raise
                os.makedirs(parent, exist_ok=True)
                fd = _create_temp(parent, os.path.basename(dest), attempted)
        except OSError as exc:
            raise _write_error(dest, exc) from exc
        try:
            with os.fdopen(fd, "wb") as f:
                _run_encoder(dest, fmt, encode, f)
        except OSError as exc:  # the buffered rest, written as the file closes (a full disk)
            raise _write_error(dest, exc) from exc
        _publish(dest, attempted[-1], overwrite)
    except BaseException:  # a signal too: nothing half-written is left, nor a new folder
        for tmp in attempted:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        _remove_empty(created)
        raise


def _missing_folders(folder: str) -> list[str]:
    """The folders ``os.makedirs(folder)`` would create, deepest first (walked as given, as
    makedirs walks it: ``a/../b`` creates ``a`` too)."""
    missing, path = [], folder
    while path and not os.path.exists(path) and path != os.path.dirname(path):
        if os.path.basename(path) not in ("", ".", ".."):
            missing.append(path)
        path = os.path.dirname(path)
    return missing


def _remove_empty(folders: list[str]) -> None:
    """Remove these folders, deepest first, while they are empty (others may be writing)."""
    for folder in folders:
        try:
            os.rmdir(folder)
        except FileNotFoundError:  # never made (stopped part way), or removed already
            continue
        except OSError:
            return


def _create_temp(parent: str, name: str, attempted: list[str]) -> int:
    """Open a new temporary file in ``parent``, its name appended to ``attempted`` before it
    is created: a signal can land between the file's creation and this call's return."""
    # os.open with 0o666 lets the umask set the final permissions (mkstemp uses 0o600).
    while len(os.fsencode(name)) > 240:  # the name, ".", 8 hex digits and ".tmp" in 255 bytes
        name = name[:-1]
    for _ in range(100):
        attempted.append(os.path.join(parent, f".{name}.{os.urandom(4).hex()}.tmp"))
        try:
            return os.open(attempted[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            attempted.pop()  # somebody else's file
    raise OSError(f"no free temporary file name in {parent}")


def _run_encoder(dest: str, fmt: str, encode: Encoder, f: BinaryIO) -> None:
    try:
        encode(f)
    except OSError as exc:
        raise _write_error(dest, exc) from exc
    except (ValueError, KeyError, TypeError) as exc:  # encoder refusals from Pillow
        raise PoolError(f"{dest}: cannot encode as {fmt.upper()} ({_one_line(exc)})") from exc


def _publish(dest: str, tmp: str, overwrite: bool) -> None:
    """Move the finished temporary file into place."""
    try:
        if overwrite:
            os.replace(tmp, dest)
            return
        try:
            # A hard link fails if dest appeared meanwhile, where os.replace would clobber it.
            os.link(tmp, dest)
        except FileExistsError:
            raise _exists_error(dest) from None
        except OSError:  # file systems without hard links
            if os.path.lexists(dest):
                raise _exists_error(dest) from None
            os.replace(tmp, dest)
            return
        os.unlink(tmp)
    except OSError as exc:
        raise _write_error(dest, exc) from exc


def _exists_error(dest: str) -> PoolError:
    return PoolError(f"{dest}: output exists (use --overwrite to replace it)")


def _write_error(dest: str, exc: OSError) -> PoolError:
    if isinstance(exc, PermissionError):
        what = "permission denied"
    elif isinstance(exc, (NotADirectoryError, FileExistsError)) and exc.filename != dest:
        what = "a parent path is not a directory"
    elif exc.errno is None and "requested and" in str(exc):  # NumPy's short write: no errno
        what = f"the disk may be full: {_one_line(exc)}"
    else:
        what = _one_line(exc.strerror or exc)
    return PoolError(f"{dest}: cannot write ({what})")


def stored_dtype(fmt: str, like: Loaded, array: np.ndarray) -> np.dtype:
    """The dtype ``array`` is stored as when written in ``fmt``: an image keeps the input's
    mode, or takes the mode that holds the array (as :func:`write_output` decides)."""
    if fmt in ("npy", "npz"):
        return array.dtype
    try:
        mode = _image_mode("-", array, fmt, like.image_mode)[1]
    except PoolError:  # no image can hold it: write_output says so, naming the file
        return array.dtype
    return _MODE_DTYPE.get(mode, array.dtype)


def write_npy_stream(dest: str, shape: tuple[int, ...], dtype: np.dtype,
                     chunks: Iterable[np.ndarray], *, overwrite: bool = False,
                     fortran_order: bool = False) -> None:
    """Write a ``.npy`` from consecutive chunks, atomically, never all in memory: chunks
    along the first axis, or with ``fortran_order`` along the last (stored in Fortran order).

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "x.npy")
    >>> write_npy_stream(path, (2, 3), np.dtype(np.int16), [np.zeros((1, 3), np.int16)] * 2)
    >>> np.load(path).shape
    (2, 3)
    """
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
              "fortran_order": fortran_order, "shape": tuple(shape)}

    def encode(f: BinaryIO) -> None:
        np.lib.format.write_array_header_1_0(f, header)
        for chunk in chunks:  # Fortran order: the transpose's C order
            f.write(np.ascontiguousarray(chunk.T if fortran_order else chunk, dtype=dtype).data)

    _write_atomically(dest, "npy", encode, overwrite)


def release_pages(view: np.ndarray) -> None:
    """Tell the OS that the pages under a view of a memory-mapped input are no longer needed.

    File pages stay in the page cache, but leave this process's resident set, so pooling a
    file larger than memory band by band keeps the RSS bounded. Other arrays are ignored.
    """
    mapping = getattr(view, "_mmap", None)
    if mapping is None or not hasattr(mapping, "madvise") or not hasattr(mmap, "MADV_DONTNEED"):
        return
    start = view.__array_interface__["data"][0] - np.frombuffer(mapping, np.uint8).ctypes.data
    span = _span_bytes(view)
    first = start - start % mmap.PAGESIZE
    length = min(len(mapping) - first, span + (start - first))
    length -= length % mmap.PAGESIZE if first + length < len(mapping) else 0
    if length > 0:
        mapping.madvise(mmap.MADV_DONTNEED, first, length)


def _span_bytes(view: np.ndarray) -> int:
    """Bytes from a view's first to its last element (it may be strided)."""
    if view.size == 0:
        return 0
    return sum((n - 1) * abs(s) for n, s in zip(view.shape, view.strides)) + view.itemsize


def save_picture(dest: str, image, *, overwrite: bool = False,
                 stdout: BinaryIO | None = None) -> None:
    """Write a Pillow image (a sheet, a grid, a plot) as PNG: atomically, or to ``stdout`` for "-"."""
    def encode(f: BinaryIO) -> None:
        image.save(f, format="PNG", compress_level=6)

    _emit(dest, "png", encode, overwrite, stdout)
