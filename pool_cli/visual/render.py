"""Pictures of pooling: images and feature maps to RGB, labelled contact sheets, feature grids.

Everything returns Pillow images (mode ``RGB``) or uint8 arrays; nothing is written to disk.
Sheets use a neutral light-grey background, dark text and Pillow's built-in font, so they
render the same everywhere, without system fonts or a network.

Every sheet made here records where it put things in ``image.info``:
``'panel_boxes'`` (one ``(left, top, right, bottom)`` box per panel, right and bottom
exclusive) and ``'label_boxes'`` (the label strip above each panel). ``info`` is not saved
with the file; it is there for callers and tests.
"""

from __future__ import annotations

import itertools
import math
from functools import lru_cache
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pool_cli.core import make_spec
from pool_cli.core.modes import split_options
from pool_cli.core.geometry import resolve_layout
from .colormaps import DIVERGING, apply_colormap, get_colormap
from .metrics import empty_axes, timed_run, upscale_nearest

__all__ = ["BACKGROUND", "CompareResult", "compare_sheet", "compose_sheet", "colorbar",
           "describe_geometry", "display_range", "feature_grid", "format_shape",
           "format_value", "get_font", "image_to_rgb", "parse_channels", "select_channels"]

BACKGROUND = (240, 240, 240)
TEXT = (20, 20, 20)
TEXT_DIM = (85, 85, 85)
BORDER = (165, 165, 165)
CHECKER = ((255, 255, 255), (204, 204, 204))
MARGIN = 16
GAP = 16
LABEL_PAD = 4


# ----------------------------------------------------------------------------- text

@lru_cache(maxsize=32)
def get_font(size: int = 14):
    """Pillow's built-in font at ``size`` px (a scalable font with Pillow >= 10.1 and FreeType;
    the fixed bitmap font otherwise)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError, AttributeError):  # pragma: no cover - old Pillow
        return ImageFont.load_default()


def _text_width(font, text: str) -> int:
    return int(math.ceil(font.getbbox(text)[2])) if text else 0


def _line_height(font) -> int:
    try:
        ascent, descent = font.getmetrics()
        return int(ascent + descent) + 2
    except AttributeError:  # pragma: no cover - bitmap font
        box = font.getbbox("Ag")
        return int(box[3] - box[1]) + 4


def format_value(v) -> str:
    """A short, readable number for labels.

    Examples
    --------
    >>> [format_value(v) for v in (-0.1234, 0.4, 255.0, 1e-05, 1019.99, 2.5e7, float("inf"))]
    ['-0.12', '0.40', '255', '1e-05', '1020', '2.5e+07', 'inf']
    """
    v = float(v)
    if not math.isfinite(v):
        return str(v)
    if v == int(v) and abs(v) < 1e6:
        return str(int(v))
    a = abs(v)
    if 0.01 <= a < 1000:
        return f"{v:.2f}"
    if 1000 <= a < 1e6:
        return f"{v:.0f}"
    return f"{v:.3g}"


def format_shape(shape) -> str:
    """``(512, 512, 3)`` -> ``'512x512x3'``."""
    return "x".join(str(int(n)) for n in shape)


def describe_geometry(plan) -> str:
    """One line naming a plan's window, stride and padding (or adaptive / global size).

    Examples
    --------
    >>> describe_geometry(make_spec("max", window=3, stride=2, padding=1).plan((9, 9)))
    'window 3x3  stride 2x2  pad 1'
    >>> describe_geometry(make_spec("avg", output_size=4).plan((9, 8)))
    'output size 4x4'
    """
    info = plan.describe()
    if info.get("output_size") is not None:
        return f"output size {format_shape(info['output_size'])}"
    if not getattr(plan, "geometry", None):  # global pooling
        return f"global ({format_shape(info['window'])})"
    pads = info["padding"]
    if all(b == 0 and e == 0 for b, e in pads):
        pad = "0"
    elif all(b == e for b, e in pads) and len({b for b, _ in pads}) == 1:
        pad = str(pads[0][0])
    else:
        pad = ",".join(f"{b}:{e}" for b, e in pads)
    text = (f"window {format_shape(info['window'])}  stride {format_shape(info['stride'])}  "
            f"pad {pad}")
    if any(d != 1 for d in info["dilation"]):
        text += f"  dilation {format_shape(info['dilation'])}"
    return text


# ----------------------------------------------------------------------------- values

def display_range(array) -> tuple[float, float]:
    """The values shown as black and white when an array is displayed as an image.

    uint8 ``(0, 255)``; uint16 ``(0, 65535)``; bool ``(0, 1)``; other integers their own
    min and max; floats ``(0, 1)`` when every finite value lies in [0, 1], else their min and
    max. An array without finite values gives ``(0, 1)``.

    Examples
    --------
    >>> display_range(np.zeros(2, np.uint16)), display_range(np.array([0.2, 0.9]))
    ((0.0, 65535.0), (0.0, 1.0))
    >>> display_range(np.array([-3.0, 5.0]))
    (-3.0, 5.0)
    """
    a = np.asarray(array)
    if a.dtype == np.bool_:
        return 0.0, 1.0
    if a.dtype == np.uint8:
        return 0.0, 255.0
    if a.dtype == np.uint16:
        return 0.0, 65535.0
    lo, hi = _finite_range(a)
    if lo is None:
        return 0.0, 1.0
    if a.dtype.kind == "f" and lo >= 0.0 and hi <= 1.0:
        return 0.0, 1.0
    return lo, hi


def _finite_range(a: np.ndarray) -> tuple[float | None, float | None]:
    if a.dtype.kind == "f":
        finite = a[np.isfinite(a)]
    else:
        finite = a.reshape(-1)
    if finite.size == 0:
        return None, None
    return float(np.min(finite)), float(np.max(finite))


def _to_unit(values, lo: float, hi: float) -> np.ndarray:
    """Scale ``lo..hi`` to 0..1 (float64, NaN kept); a flat range maps to 0.5."""
    v = np.asarray(values, dtype=np.float64)
    if not hi > lo:
        return np.where(np.isnan(v), np.nan, 0.5)
    if np.isinf(hi - lo):  # a span past float64's range (1e308 and -1e308): halves fit
        return (v / 2 - lo / 2) / (hi / 2 - lo / 2)
    return (v - lo) / (hi - lo)


def _unit_to_u8(unit: np.ndarray) -> np.ndarray:
    return np.round(np.clip(np.nan_to_num(unit, nan=0.0), 0.0, 1.0) * 255).astype(np.uint8)


# ----------------------------------------------------------------------------- images

def _image_axes(layout: str | None, ndim: int) -> str:
    if layout is None:
        if ndim not in (2, 3):
            raise ValueError(f"an image has 2 or 3 axes (HW or HWC), not {ndim}")
        return "HW" if ndim == 2 else "HWC"
    letters = layout.upper()
    if len(letters) != ndim or sorted(letters) not in (["H", "W"], ["C", "H", "W"]):
        raise ValueError(f"layout {layout!r} is not an image layout for a {ndim}-D array "
                         f"(use HW, HWC or CHW, or feature_grid for feature maps)")
    return letters


def checkerboard(height: int, width: int, cell: int = 8) -> np.ndarray:
    """A light grey/white checkerboard, uint8 ``(height, width, 3)``, to show transparency."""
    y = (np.arange(height) // cell)[:, None]
    x = (np.arange(width) // cell)[None, :]
    dark = ((y + x) % 2).astype(bool)
    out = np.empty((height, width, 3), np.uint8)
    out[~dark] = CHECKER[0]
    out[dark] = CHECKER[1]
    return out


def image_to_rgb(array, layout: str | None = None, value_range=None,
                 checker: int = 8, cmyk: bool = False) -> np.ndarray:
    """Turn an image array into 8-bit RGB for display.

    Parameters
    ----------
    array : array_like
        ``HW`` grey or ``HWC`` with 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA) channels,
        of any real dtype.
    layout : str, optional
        ``'HW'``, ``'HWC'`` or ``'CHW'``; by default ``HW`` for 2-D and ``HWC`` for 3-D.
    value_range : (float, float), optional
        Values shown as 0 and 255; by default :func:`display_range` (uint16 is divided down
        to 8 bits, floats in [0, 1] are taken as they are, other floats stretched min..max).
        Alpha is scaled by the same range. NaN shows as black.
    checker : int
        Cell size in px of the checkerboard that transparent pixels are composited over.
    cmyk : bool
        Four channels are C, M, Y, K ink (a CMYK image), shown as Pillow converts them to
        RGB (``1 - min(1, c + k)`` and so on), not as RGBA.

    Returns
    -------
    numpy.ndarray
        uint8, shape ``(H, W, 3)``.

    Examples
    --------
    >>> rgba = np.array([[[255, 0, 0, 255], [255, 0, 0, 0]]], np.uint8)
    >>> image_to_rgb(rgba).tolist()
    [[[255, 0, 0], [255, 255, 255]]]
    >>> image_to_rgb(np.array([[0, 65535]], np.uint16))[0, :, 0].tolist()
    [0, 255]
    """
    a = np.asarray(array)
    if a.dtype.kind not in "biuf":
        raise ValueError(f"cannot display a {a.dtype} array as an image")
    letters = _image_axes(layout, a.ndim)
    if "C" not in letters:
        a, letters = a[..., None], letters + "C"
    a = np.transpose(a, [letters.index(c) for c in "HWC"])
    channels = a.shape[2]
    if not 1 <= channels <= 4:
        raise ValueError(f"an image has 1 to 4 channels, this one {channels} "
                         f"(show feature maps with feature_grid)")
    lo, hi = display_range(a) if value_range is None else map(float, value_range)
    unit = _to_unit(a, lo, hi)
    if cmyk:
        if channels != 4:
            raise ValueError(f"a CMYK image has 4 channels, this one {channels}")
        return _unit_to_u8(1 - np.minimum(1, unit[..., :3] + unit[..., 3:]))
    colour = unit[..., :3] if channels >= 3 else np.repeat(unit[..., :1], 3, axis=2)
    if channels in (2, 4):
        alpha = np.clip(np.nan_to_num(unit[..., -1:], nan=1.0), 0.0, 1.0)
        back = checkerboard(a.shape[0], a.shape[1], checker) / 255.0
        colour = np.clip(np.nan_to_num(colour, nan=0.0), 0, 1) * alpha + back * (1 - alpha)
    return _unit_to_u8(colour)


def _as_rgb_image(panel) -> Image.Image:
    if isinstance(panel, Image.Image):
        return panel.convert("RGB")
    a = np.asarray(panel)
    if a.dtype != np.uint8:
        raise ValueError(f"panel arrays must be uint8 RGB, got {a.dtype}")
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"panel arrays must be (H, W, 3) uint8, got shape {a.shape}")
    return Image.fromarray(np.ascontiguousarray(a), "RGB")


def _lines(title) -> list[str]:
    if title is None:
        return []
    if isinstance(title, str):
        return title.splitlines() or [""]
    return [str(t) for t in title]


# ----------------------------------------------------------------------------- sheets

def compose_sheet(panels, columns: int | None = None, title: str | None = None, notes=(),
                  font_size: int | None = None, background=BACKGROUND, max_width: int = 2400,
                  footer_image=None) -> Image.Image:
    """Lay out labelled panels on a grid: a contact sheet.

    Parameters
    ----------
    panels : sequence of (title, image)
        ``title`` is a string (lines split at newlines) or a list of lines, drawn in a strip
        above the panel (first line dark, the others grey); ``image`` is a uint8 ``(H, W, 3)``
        or ``(H, W)`` array or a Pillow image. Panels keep their size: scale them first.
    columns : int, optional
        By default as many as fit in ``max_width`` px, balanced over the rows.
    title : str, optional
        A heading above the grid.
    notes : sequence of str
        Lines of small print below the grid.
    font_size : int, optional
        Label size in px; by default from the panel width (12 to 18).
    background : tuple of 3 int
        Sheet colour (neutral light grey).
    max_width : int
        Width in px that automatic columns aim to stay within.
    paged : bool
        Whether the tiles beyond ``max_tiles`` can be paged to (``page``); if not, the note
        says to choose them with ``channels``.
    footer_image : PIL.Image.Image or array, optional
        A strip (a colour bar, say) drawn below the grid, left-aligned.

    Returns
    -------
    PIL.Image.Image
        RGB; ``info['panel_boxes']`` and ``info['label_boxes']`` hold each panel's and label
        strip's ``(left, top, right, bottom)``.

    Examples
    --------
    >>> white = np.full((20, 30, 3), 255, np.uint8)
    >>> sheet = compose_sheet([("a", white), (["b", "second line"], white)], columns=2)
    >>> left, top, right, bottom = sheet.info["panel_boxes"][1]
    >>> (right - left, bottom - top), sheet.getpixel((left + 15, top + 10))
    ((30, 20), (255, 255, 255))
    """
    items = [(_lines(t), _as_rgb_image(p)) for t, p in panels]
    if not items:
        raise ValueError("a sheet needs at least one panel")
    panel_w = max(im.width for _, im in items)
    panel_h = max(im.height for _, im in items)
    size = font_size or int(np.clip(panel_w // 32, 12, 18))
    font = get_font(size)
    lh = _line_height(font)
    n_lines = max(len(lines) for lines, _ in items)
    label_h = n_lines * lh + 2 * LABEL_PAD if n_lines else 0
    label_w = max((_text_width(font, line) for lines, _ in items for line in lines), default=0)
    cell_w = max(panel_w, label_w)
    cell_h = label_h + panel_h
    n = len(items)
    if columns is None:
        columns = max(1, min(n, (max_width - 2 * MARGIN + GAP) // (cell_w + GAP)))
        columns = math.ceil(n / math.ceil(n / columns))
    columns = max(1, min(int(columns), n))
    rows = math.ceil(n / columns)

    title_font = get_font(size + 4)
    title_h = _line_height(title_font) + GAP // 2 if title else 0
    note_font = get_font(max(11, size - 2))
    notes = [str(line) for line in notes]
    note_h = len(notes) * _line_height(note_font)
    footer = None if footer_image is None else _as_rgb_image(footer_image)

    grid_w = columns * cell_w + (columns - 1) * GAP
    grid_h = rows * cell_h + (rows - 1) * GAP
    content_w = max([grid_w, _text_width(title_font, title or ""),
                     footer.width if footer else 0] +
                    [_text_width(note_font, line) for line in notes])
    height = (MARGIN + title_h + grid_h + (GAP + footer.height if footer else 0)
              + (GAP // 2 + note_h if notes else 0) + MARGIN)
    sheet = Image.new("RGB", (content_w + 2 * MARGIN, height), tuple(background))
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((MARGIN, MARGIN), title, fill=TEXT, font=title_font)
    panel_boxes, label_boxes = [], []
    for k, (lines, im) in enumerate(items):
        row, col = divmod(k, columns)
        x = MARGIN + col * (cell_w + GAP)
        y = MARGIN + title_h + row * (cell_h + GAP)
        for j, line in enumerate(lines):
            draw.text((x, y + LABEL_PAD + j * lh), line, fill=TEXT if j == 0 else TEXT_DIM,
                      font=font)
        label_boxes.append((x, y, x + cell_w, y + label_h))
        py = y + label_h
        sheet.paste(im, (x, py))
        draw.rectangle([x - 1, py - 1, x + im.width, py + im.height], outline=BORDER)
        panel_boxes.append((x, py, x + im.width, py + im.height))
    y = MARGIN + title_h + grid_h
    if footer:
        y += GAP
        sheet.paste(footer, (MARGIN, y))
        y += footer.height
    if notes:
        y += GAP // 2
        for j, line in enumerate(notes):
            draw.text((MARGIN, y + j * _line_height(note_font)), line, fill=TEXT_DIM,
                      font=note_font)
    sheet.info["panel_boxes"] = panel_boxes
    sheet.info["label_boxes"] = label_boxes
    return sheet


def colorbar(cmap: str = "viridis", low: str = "min", high: str = "max", middle: str | None = None,
             caption: str | None = None, width: int = 320, height: int = 14,
             font_size: int = 12, background=BACKGROUND) -> Image.Image:
    """A horizontal colour bar with end labels (and an optional middle label and caption).

    The ramp is ``width`` x ``height`` px at (1, 1) inside a 1 px grey border.

    Examples
    --------
    >>> bar = colorbar("gray", "0", "1", width=256)
    >>> bar.width >= 258, bar.getpixel((1, 1)), bar.getpixel((256, 1))
    (True, (0, 0, 0), (255, 255, 255))
    """
    font = get_font(font_size)
    lh = _line_height(font)
    ramp = np.broadcast_to(get_colormap(cmap)[np.linspace(0, 255, width).round().astype(int)],
                           (height, width, 3))
    cap_w = _text_width(font, caption) if caption else 0
    total_w = max(width + 2 + _text_width(font, high) // 2, cap_w)
    total_h = height + 4 + lh + (lh if caption else 0)
    im = Image.new("RGB", (total_w, total_h), tuple(background))
    im.paste(Image.fromarray(np.ascontiguousarray(ramp), "RGB"), (1, 1))
    draw = ImageDraw.Draw(im)
    draw.rectangle([0, 0, width + 1, height + 1], outline=BORDER)
    y = height + 4
    draw.text((0, y), low, fill=TEXT, font=font)
    draw.text((max(width + 2 - _text_width(font, high), _text_width(font, low) + 8), y), high,
              fill=TEXT, font=font)
    if middle:
        draw.text((width // 2 - _text_width(font, middle) // 2, y), middle, fill=TEXT, font=font)
    if caption:
        draw.text((0, y + lh), caption, fill=TEXT_DIM, font=font)
    return im


# ----------------------------------------------------------------------------- feature maps

def select_channels(channels, count: int) -> list[int]:
    """Channel indices chosen by ``channels`` among ``count``.

    ``None`` (all), an int, a slice, a sequence of ints, or a string ``'3'``, ``'0:16'``,
    ``'0:16:2'``, ``'0,2,5'`` (Python slice rules, negative indices allowed).

    Examples
    --------
    >>> select_channels("0:16", 8), select_channels("1,-1", 8), select_channels(slice(0, 8, 3), 8)
    ([0, 1, 2, 3, 4, 5, 6, 7], [1, 7], [0, 3, 6])
    """
    if channels is None:
        return list(range(count))
    if isinstance(channels, str):
        channels = parse_channels(channels)
    if isinstance(channels, slice):
        return list(range(count))[channels]
    if isinstance(channels, (int, np.integer)):
        channels = [channels]
    chosen = []
    for c in channels:
        c = int(c)
        if not -count <= c < count:
            raise ValueError(f"channel {c} is out of range (there are {count})")
        chosen.append(c % count)
    return chosen


def parse_channels(text: str) -> slice | list[int]:
    """A channel selection written as ``'3'``, ``'0:16'``, ``'0:16:2'`` or ``'0,2,5'``.

    >>> parse_channels("0:16:2"), parse_channels("1, -1")
    (slice(0, 16, 2), [1, -1])
    """
    text = text.strip()
    try:
        if ":" in text:
            parts = [int(p) if p.strip() else None for p in text.split(":")]
            if len(parts) > 3 or parts[2:] == [0]:
                raise ValueError
            return slice(*parts)
        return [int(p) for p in text.split(",")]
    except ValueError:
        raise ValueError(f"channels must look like 3, 0:16, 0:16:2 or 0,2,5; got "
                         f"{text!r}") from None


def _before_after(before_after, shape, layout):
    if before_after is None:
        return None
    if isinstance(before_after, tuple) and len(before_after) == 2 and hasattr(
            before_after[1], "out_shape"):
        pooled, plan = before_after
    else:
        pooled, plan = before_after, None
    return upscale_nearest(np.asarray(pooled), shape, plan, layout)


def _range_of(data: np.ndarray) -> tuple[float, float]:
    lo, hi = _finite_range(np.asarray(data))
    return (float("nan"), float("nan")) if lo is None else (lo, hi)


def _scale_of(lo: float, hi: float, cmap: str, symmetric) -> tuple[float, float]:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return 0.0, 1.0
    centre = (cmap.lower() in DIVERGING and lo < 0 < hi) if symmetric is None else symmetric
    if centre:
        m = max(abs(lo), abs(hi))
        return -m, m
    return lo, hi


def _zoom_factors(h: int, w: int, min_side: int, max_side: int) -> tuple[int, int]:
    longest = max(h, w)
    zoom = max(1, min_side // longest) if longest < min_side else 1
    shrink = math.ceil(longest / max_side) if longest > max_side else 1
    return zoom, shrink


def _resize(rgb: np.ndarray, zoom: int, shrink: int) -> np.ndarray:
    if zoom > 1:
        rgb = np.repeat(np.repeat(rgb, zoom, axis=0), zoom, axis=1)
    if shrink > 1:
        rgb = np.asarray(Image.fromarray(np.ascontiguousarray(rgb), "RGB").reduce(shrink))
    return rgb


def feature_grid(array, layout: str | None = None, channels=None, normalize: str = "channel",
                 cmap: str = "viridis", before_after=None, *, max_tiles: int = 64,
                 page: int = 0, columns: int | None = None, symmetric: bool | None = None,
                 reference=None, title: str | None = None, min_tile: int = 96,
                 max_tile: int = 384, colorbar_strip: bool = True,
                 max_width: int = 2400, paged: bool = True) -> tuple[Image.Image, list[str]]:
    """Render a feature map as a labelled grid of colour-mapped tiles, one per 2-D map.

    Parameters
    ----------
    array : array_like
        Real values with an ``H`` and a ``W`` axis; every other axis (``N``, ``C``, ``D``)
        indexes tiles.
    layout : str, optional
        Axis letters; by default from the number of dimensions (2 ``HW``, 3 ``CHW``,
        4 ``NCHW``, 5 ``NCDHW``).
    channels : None, int, slice, sequence or str, optional
        Which ``C`` indices to show (see :func:`select_channels`); all by default.
    normalize : {'channel', 'global'}
        Scale each tile from its own min to max, or all tiles from the overall min to max.
    cmap : str
        A colour map of :mod:`pool_cli.visual.colormaps`. Diverging maps are centred on 0 for
        data of both signs (see ``symmetric``).
    before_after : array_like or (array_like, plan), optional
        The pooled array: each tile then shows the input (left) and the pooled output scaled
        back up with nearest neighbour (right, see
        :func:`pool_cli.visual.metrics.upscale_nearest`; pass the plan from
        ``make_spec(...).plan(shape)`` to put each output over its window), on the input's
        colour scale; pooled values beyond the input's range (sums, Lp norms) on their own,
        with a note.
    max_tiles : int
        Tiles per page; more are paged (a note says so).
    page : int
        Which page (from 0).
    columns : int, optional
        Tiles per row; by default about a 16:9 grid, within ``max_width``.
    symmetric : bool, optional
        Centre the colour scale on 0 (``-m..m``, ``m`` the largest magnitude). By default
        on for diverging maps when the data has both signs.
    reference : array_like, optional
        Take the colour scales from this array (same shape; the input, when ``array`` is an
        upscaled pooled output) instead of ``array``: keeps several grids comparable.
    title : str, optional
        Heading.
    min_tile, max_tile : int
        Tiles whose longest side is below ``min_tile`` px are enlarged by a whole factor
        (nearest neighbour); above ``max_tile`` px reduced by a whole factor (box average).
    colorbar_strip : bool
        Draw a colour bar below the grid.
    max_width : int
        Width in px that automatic columns aim to stay within.
    paged : bool
        Whether the tiles beyond ``max_tiles`` can be paged to (``page``); if not, the note
        says to choose them with ``channels``.

    Returns
    -------
    (PIL.Image.Image, list of str)
        The grid (``info['panel_boxes']`` gives each tile's box) and notes for the user
        (paging, scaling), empty when there is nothing to say.

    Examples
    --------
    >>> x = np.arange(2 * 4 * 6, dtype=float).reshape(2, 4, 6)
    >>> grid, notes = feature_grid(x, "CHW", min_tile=24)
    >>> len(grid.info["panel_boxes"]), notes
    (2, [])
    """
    a = np.asarray(array)
    if a.dtype.kind not in "biuf":
        raise ValueError(f"cannot show a {a.dtype} array")
    layout = resolve_layout(layout, a.ndim)
    if "H" not in layout or "W" not in layout:
        raise ValueError(f"a feature grid needs H and W axes; layout {layout!r} lacks "
                         f"{'H' if 'H' not in layout else 'W'}")
    if normalize not in ("channel", "global"):
        raise ValueError(f"normalize must be 'channel' or 'global', not {normalize!r}")
    if a.size == 0:  # said before any selection, which would find no channel to blame
        raise ValueError(f"nothing to draw: {empty_axes(a.shape, layout)}")
    get_colormap(cmap)  # unknown names fail early
    lead = [i for i, letter in enumerate(layout) if letter not in "HW"]
    perm = lead + [layout.index("H"), layout.index("W")]
    letters = [layout[i] for i in lead]
    tiles_of = np.transpose(a, perm)
    ref = tiles_of if reference is None else np.transpose(np.asarray(reference), perm)
    if ref.shape != tiles_of.shape:
        raise ValueError(f"reference shape {np.asarray(reference).shape} differs from {a.shape}")
    after = _before_after(before_after, a.shape, layout)
    after_tiles = None if after is None else np.transpose(after, perm)

    per_axis = [select_channels(channels, n) if letter == "C" else list(range(n))
                for letter, n in zip(letters, tiles_of.shape[:-2])]
    if channels is not None and "C" not in letters:
        raise ValueError(f"layout {layout!r} has no C axis to choose channels from")
    every = list(itertools.product(*per_axis))
    if not every:
        raise ValueError("no channels selected")
    notes: list[str] = []
    pages = math.ceil(len(every) / max_tiles)
    if not 0 <= page < pages:
        raise ValueError(f"page {page + 1} does not exist (there are {pages})")
    shown = every[page * max_tiles:(page + 1) * max_tiles]
    what = "channels" if letters == ["C"] else "maps"
    if pages > 1:
        notes.append(f"showing {len(shown)} of {len(every)} {what} "
                     f"({_tile_name(letters, shown[0])} to {_tile_name(letters, shown[-1])}), "
                     + (f"page {page + 1} of {pages}" if paged else "the first ones: choose "
                        "others with channels (--channels)"))

    ranges: dict[tuple, tuple[float, float]] = {}  # each tile scanned once, when first needed

    def tile_range(idx) -> tuple[float, float]:
        if idx not in ranges:
            ranges[idx] = _range_of(ref[idx])
        return ranges[idx]

    if normalize == "global":
        global_scale = _scale_of(*_overall_range(map(tile_range, every)), cmap, symmetric)
    # pooled values beyond the input's scale (sums, Lp norms) get a scale of their own: one
    # for all pooled halves with a global scale, else each tile's own
    after_global = None
    if after is not None and normalize == "global" and not _within(after, global_scale):
        after_global = _scale_of(*_overall_range(_range_of(after_tiles[i]) for i in every),
                                 cmap, symmetric)
    after_own_scale = after_global is not None
    h, w = tiles_of.shape[-2:]
    zoom, shrink = _zoom_factors(h, w * (2 if after is not None else 1), min_tile,
                                 max_tile * (2 if after is not None else 1))
    if shrink > 1:
        notes.append(f"tiles shown at 1/{shrink} scale (box average)")

    panels = []
    for idx in shown:
        data = tiles_of[idx]
        scale = global_scale if normalize == "global" else _scale_of(
            *tile_range(idx), cmap, symmetric)
        rgb = apply_colormap(_to_unit(data, *scale), cmap)
        shown_range = tile_range(idx) if reference is None else _range_of(data)
        lines = [f"{_tile_name(letters, idx)}  {_range_label(shown_range)}"]
        if after_tiles is not None:
            after_scale = after_global or scale
            if normalize != "global" and not _within(after_tiles[idx], scale):
                after_scale = _scale_of(*_range_of(after_tiles[idx]), cmap, symmetric)
                after_own_scale = True
            right = apply_colormap(_to_unit(after_tiles[idx], *after_scale), cmap)
            sep = np.full((h, max(1, round(4 / zoom)), 3), BACKGROUND, np.uint8)  # ~4 px
            rgb = np.concatenate([rgb, sep, right], axis=1)
            lines.append(f"pooled  {_range_label(_range_of(after_tiles[idx]))}")
        panels.append((lines, _resize(rgb, zoom, shrink)))

    strip = None
    if colorbar_strip:
        strip = _grid_colorbar(cmap, normalize, symmetric, global_scale if normalize == "global"
                               else None, map(tile_range, every), reference is not None)
    notes_on_sheet = []
    if after is not None:
        notes_on_sheet = ["each tile: input (left) | pooled, scaled back up with nearest "
                          "neighbour (right), on " + ("its own colour scale" if after_own_scale
                                                      else "the input's colour scale")]
    if after_own_scale:
        notes.append("pooled values exceed the input's range: the pooled halves use their "
                     "own colour scale")
    tile_w = max(im.shape[1] for _, im in panels)
    tile_h = max(im.shape[0] for _, im in panels)
    if columns is None:  # about 16:9 overall, within max_width
        columns = math.ceil(math.sqrt(len(panels) * 16 / 9 * tile_h / tile_w))
        columns = max(1, min(columns, len(panels),
                             (max_width - 2 * MARGIN + GAP) // (tile_w + GAP)))
        columns = math.ceil(len(panels) / math.ceil(len(panels) / columns))
    grid = compose_sheet(panels, columns=columns, title=title, notes=notes_on_sheet + notes,
                         font_size=int(np.clip(tile_w // 14, 11, 14)), max_width=max_width,
                         footer_image=strip)
    return grid, notes


def _tile_name(letters, idx) -> str:
    if not letters:
        return "map"
    return " ".join(f"{letter.lower()}{i}" for letter, i in zip(letters, idx))


def _range_label(lo_hi: tuple[float, float]) -> str:
    lo, hi = lo_hi
    return f"[{format_value(lo)}, {format_value(hi)}]"


def _overall_range(ranges) -> tuple[float, float]:
    """The range of all the tiles with ``ranges`` (tiles without a finite value left out)."""
    finite = [(lo, hi) for lo, hi in ranges if not math.isnan(lo)]
    if not finite:
        return float("nan"), float("nan")
    return min(lo for lo, _ in finite), max(hi for _, hi in finite)


def _grid_colorbar(cmap, normalize, symmetric, scale, tile_ranges, shared) -> Image.Image:
    if normalize == "global":
        lo, hi = scale
        middle = "0" if lo < 0 < hi and math.isclose(-lo, hi) else None
        return colorbar(cmap, format_value(lo), format_value(hi), middle,
                        caption=f"{cmap}, one scale for every tile")
    centred = symmetric
    if centred is None:
        centred = cmap.lower() in DIVERGING and any(lo < 0 < hi for lo, hi in tile_ranges)
    whose = "the input's scale for that map" if shared else "its own scale"
    if centred:
        return colorbar(cmap, "-max|tile|", "+max|tile|", "0",
                        caption=f"{cmap}, each tile on {whose}, centred on 0")
    return colorbar(cmap, "tile min", "tile max",
                    caption=f"{cmap}, each tile on {whose}"
                    + ("" if shared else " (its range in brackets)"))


# ----------------------------------------------------------------------------- compare

class CompareResult(NamedTuple):
    """What :func:`compare_sheet` returns."""

    image: Image.Image
    notes: list[str]
    rows: list[dict]


def mode_title(spec) -> str:
    """A spec's mode as labels show it: ``lp (p=3)``, ``avg (count pad)``, ``max``."""
    mode = spec.mode.name
    if mode == "lp":
        return f"lp (p={format_value(spec.power)})"
    if mode == "avg" and spec.count_include_pad:
        return "avg (count pad)"
    return mode


def _is_image_layout(layout: str, shape) -> bool:
    """Whether a resolved layout can be drawn as an image: HW, or HWC with 1-4 channels."""
    if layout == "HW":
        return True
    return layout == "HWC" and 1 <= shape[2] <= 4


def compare_sheet(x, modes=("max", "avg", "min", "lp"), layout: str | None = None, *,
                  kind: str = "auto", title: str | None = None, repeat: int = 1,
                  cmap: str = "viridis", normalize: str = "channel", channels=None,
                  max_tiles: int = 16, min_panel: int = 256, max_panel: int = 1024,
                  columns: int | None = None, cmyk: bool = False,
                  **pool_options) -> CompareResult:
    """Contact sheet: the input, then one panel per mode scaled back up to the input's size.

    Each pooled output is scaled back up with nearest neighbour over the cells its window
    covers (:func:`pool_cli.visual.metrics.upscale_nearest`), so pooled blocks show at the
    input's scale; each panel is labelled with the mode, window/stride/padding, output shape
    and pooling time (median of ``repeat`` runs of :func:`pool_cli.pool`).

    Parameters
    ----------
    x : array_like
        An image (``HW``, or ``HWC`` with 1-4 channels, named by ``layout``; alpha is
        composited over a checkerboard) or a feature map (anything else with H and W axes,
        drawn as a :func:`feature_grid` per panel); see ``kind``.
    modes : sequence of str
        Pooling modes, one panel each.
    layout : str, optional
        Axis letters; by default from the number of dimensions (2-D ``HW``, 3-D ``CHW``),
        and the array is then a feature map: pass ``'HW'`` for a grey image, ``'HWC'`` for
        a colour one.
    kind : {'auto', 'image', 'features'}
        ``auto`` draws an array whose ``layout`` is given as ``HW`` or ``HWC`` (1-4 channels)
        as an image, as :func:`pool_cli.io.read_input` gives decoded pictures; everything
        else as feature grids, among them arrays without a layout (``.npy`` files), 2-D
        ones too (one map: NaN in magenta, its value range labelled).
    title : str, optional
        Heading of the sheet.
    repeat : int
        Runs of each pooling; the label shows the median time.
    cmap, normalize, channels, max_tiles
        For feature maps, as in :func:`feature_grid` (colour scales come from the input).
    min_panel, max_panel : int
        Image panels whose longest side is below ``min_panel`` px are enlarged by a whole
        factor (nearest neighbour), above ``max_panel`` reduced by one (box average).
    columns : int, optional
        Panels per row (default: as many as fit 2400 px).
    cmyk : bool
        The image is CMYK (see :func:`image_to_rgb`).
    **pool_options
        Geometry for :func:`pool_cli.pool`: window, stride, padding, dilation, ceil_mode,
        output_size, global_pool, ignore_nan, and the mode-specific power (lp) and
        count_include_pad (avg), passed only to the modes that take them.

    Returns
    -------
    CompareResult
        ``(image, notes, rows)``: the sheet; notes for the user (display scaling and
        stretching, paging); one dict per mode with ``mode``, ``output_shape``,
        ``output_dtype``, ``time_ms`` and the plan's ``describe()`` fields.

    Raises
    ------
    pool_cli.PoolError
        For an unknown mode or a geometry that does not fit the input.

    Examples
    --------
    >>> board = (np.indices((8, 8)).sum(axis=0) % 2 * 255).astype(np.uint8)
    >>> sheet, notes, rows = compare_sheet(board, ["max", "min"], "HW", window=2)
    >>> [r["output_shape"] for r in rows]
    [[4, 4], [4, 4]]
    """
    a = np.asarray(x)
    given = layout
    layout = resolve_layout(layout, a.ndim)
    if kind == "auto":
        # pictures come with their reader's HW or HWC; arrays without a layout (.npy files)
        # are feature maps even when 2-D, so that NaN and the value range show
        image = given is not None and _is_image_layout(layout, a.shape)
        kind = "image" if image else "features"
    if kind not in ("image", "features"):
        raise ValueError(f"kind must be 'auto', 'image' or 'features', not {kind!r}")
    if kind == "image" and not _is_image_layout(layout, a.shape):
        raise ValueError(f"an image is HW or HWC with 1-4 channels, not {layout} {a.shape}")
    if kind == "image" and channels is not None:
        raise ValueError("channels choose the tiles of a feature map; an image is drawn whole")
    jobs = []
    for mode in modes:
        geometry, extra = split_options(mode, pool_options)
        spec = make_spec(mode, layout=layout, **geometry, **extra)
        jobs.append((mode, spec, spec.plan(a.shape)))

    notes: list[str] = []
    if kind == "image":
        in_range = display_range(a)
        h, w = a.shape[0], a.shape[1]
        zoom, shrink = _zoom_factors(h, w, min_panel, max_panel)
        if zoom > 1:
            notes.append(f"panels enlarged {zoom}x (nearest neighbour)")
        if shrink > 1:
            notes.append(f"panels shown at 1/{shrink} scale (box average): pooled blocks "
                         f"smaller than {shrink} px blur on screen")

        def render(values, rng):
            return _resize(image_to_rgb(values, layout, rng, cmyk=cmyk), zoom, shrink)
    else:
        def render(values, rng):
            grid, grid_notes = feature_grid(
                values, layout, channels, normalize, cmap, max_tiles=max_tiles,
                reference=a if rng is None else None, max_width=1200, paged=False)
            for note in grid_notes:
                if note not in notes:
                    notes.append(note)
            return grid

    panels = [(["input", f"{format_shape(a.shape)} {a.dtype}"],
               render(a, in_range if kind == "image" else "own"))]
    rows = []
    input_range = _finite_range(np.asarray(a))  # once, not per mode
    for mode, spec, plan in jobs:
        y, times = timed_run(spec, a, plan, repeat)
        ms = float(np.median(times)) * 1e3
        up = upscale_nearest(y, a.shape, plan)
        label = mode_title(spec)
        if kind == "image":
            lo, hi = _finite_range(np.asarray(y))
            own = lo is not None and (lo < in_range[0] or hi > in_range[1])
            rng = (min(lo, 0.0), hi) if own else in_range
            if own:
                notes.append(f"{label}: values exceed the input's range; shown on "
                             f"{format_value(rng[0])}..{format_value(rng[1])} instead")
            image = render(up, rng)
        else:
            same_scale = _within(y, input_range)
            if not same_scale:
                notes.append(f"{label}: values exceed the input's range; tiles use their "
                             f"own scale")
            image = render(up, None if same_scale else "own")
        geometry = describe_geometry(plan) + ("  ceil mode" if spec.ceil_mode else "")
        panels.append(([label, geometry,
                        f"out {format_shape(y.shape)} {y.dtype}  {_format_ms(ms)}"], image))
        rows.append({"mode": mode, "output_shape": list(y.shape), "output_dtype": str(y.dtype),
                     "time_ms": ms, **plan.describe(), "ceil_mode": spec.ceil_mode})
    footer = ["pooled outputs scaled back up to the input's size with nearest neighbour "
              "(each output over the cells its window covers)"]
    if repeat > 1:
        footer.append(f"times: median of {int(repeat)} runs of the pooling")
    sheet = compose_sheet(panels, columns=columns, title=title, notes=footer + notes)
    return CompareResult(sheet, notes, rows)


def _within(y, x_range) -> bool:
    """Whether ``y``'s finite values lie inside ``x_range`` (from :func:`_finite_range`)."""
    ylo, yhi = _finite_range(np.asarray(y))
    xlo, xhi = x_range
    if ylo is None or xlo is None:
        return True
    return xlo <= ylo and yhi <= xhi


def _format_ms(ms: float) -> str:
    if ms < 1:  # ASCII only: the built-in font has no micro sign
        return f"{ms:.3f} ms" if ms < 0.1 else f"{ms:.2f} ms"
    return f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms"
