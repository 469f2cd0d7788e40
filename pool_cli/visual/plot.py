"""A labelled scatter plot drawn with Pillow: pooling time against PSNR.

No plotting library: axes, ticks, gridlines, markers, point labels and a legend are drawn
with ``PIL.ImageDraw`` and Pillow's built-in font. Groups (modes) get a colour from the
Okabe-Ito colour-blind-safe palette (Okabe & Ito, "Color Universal Design", 2008) and a
marker shape of their own, so the plot also reads in grey.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from .render import BACKGROUND, BORDER, TEXT, TEXT_DIM, _line_height, _text_width, get_font

__all__ = ["PALETTE", "nice_ticks", "points_from_rows", "scatter_plot"]

#: Okabe-Ito colours (yellow left out: too light on white), one per group in order.
PALETTE = [(0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167), (230, 159, 0),
           (86, 180, 233), (0, 0, 0)]
MARKERS = ["circle", "square", "triangle", "diamond", "triangle_down", "plus", "cross"]
GRID = (228, 228, 228)
AXIS = (60, 60, 60)
PLOT_BG = (255, 255, 255)


def nice_ticks(lo: float, hi: float, target: int = 7) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten apart) covering ``lo..hi``.

    Examples
    --------
    >>> nice_ticks(0.0, 1.0)
    [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    >>> nice_ticks(0.0, 100.0)
    [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
    >>> nice_ticks(12.3, 47.9)
    [15.0, 20.0, 25.0, 30.0, 35.0, 40.0, 45.0]
    """
    if not hi > lo:
        return [lo]
    raw = (hi - lo) / max(1, target - 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = min((m * power for m in (1, 2, 2.5, 5, 10)), key=lambda v: abs(math.log(v / raw)))
    first = math.ceil(lo / step - 1e-9)
    last = math.floor(hi / step + 1e-9)
    return [round(k * step, 12) for k in range(first, last + 1)]


def _log_ticks(lo: float, hi: float) -> list[float]:
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    mults = (1, 2, 5) if len(decades) <= 4 else (1,)
    ticks = [m * 10.0 ** d for d in decades for m in mults]
    return [t for t in ticks if lo * (1 - 1e-9) <= t <= hi * (1 + 1e-9)]


def _tick_text(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e5 or abs(v) < 1e-3:
        return f"{v:.0e}"
    text = f"{v:.6f}".rstrip("0").rstrip(".")
    return text


def _draw_marker(draw: ImageDraw.ImageDraw, shape: str, x: float, y: float, r: float, colour):
    outline = tuple(max(0, c - 60) for c in colour)
    if shape == "circle":
        draw.ellipse([x - r, y - r, x + r, y + r], fill=colour, outline=outline)
    elif shape == "square":
        q = r * 0.88
        draw.rectangle([x - q, y - q, x + q, y + q], fill=colour, outline=outline)
    elif shape == "triangle":
        draw.polygon([(x, y - r * 1.15), (x + r, y + r * 0.75), (x - r, y + r * 0.75)],
                     fill=colour, outline=outline)
    elif shape == "triangle_down":
        draw.polygon([(x, y + r * 1.15), (x + r, y - r * 0.75), (x - r, y - r * 0.75)],
                     fill=colour, outline=outline)
    elif shape == "diamond":
        draw.polygon([(x, y - r * 1.2), (x + r * 1.2, y), (x, y + r * 1.2), (x - r * 1.2, y)],
                     fill=colour, outline=outline)
    elif shape == "plus":
        w = max(2, int(r / 2))
        draw.line([(x - r, y), (x + r, y)], fill=colour, width=w)
        draw.line([(x, y - r), (x, y + r)], fill=colour, width=w)
    else:
        w = max(2, int(r / 2))
        draw.line([(x - r, y - r), (x + r, y + r)], fill=colour, width=w)
        draw.line([(x - r, y + r), (x + r, y - r)], fill=colour, width=w)


def _vertical_text(text: str, font, colour, background) -> Image.Image:
    w, h = _text_width(font, text) + 2, _line_height(font)
    im = Image.new("RGB", (w, h), background)
    ImageDraw.Draw(im).text((0, 0), text, fill=colour, font=font)
    return im.rotate(90, expand=True)


def _overlaps(box, boxes) -> bool:
    x0, y0, x1, y1 = box
    return any(x0 < b[2] and b[0] < x1 and y0 < b[3] and b[1] < y1 for b in boxes)


def scatter_plot(points, title: str | None = None, x_label: str = "pooling time (ms)",
                 y_label: str = "PSNR (dB)", size: tuple[int, int] = (960, 600),
                 x_log: bool | None = None, legend_title: str = "mode",
                 inf_label: str = "inf") -> Image.Image:
    """Scatter plot of labelled points, one colour and marker per group, with a legend.

    Parameters
    ----------
    points : sequence of (label, x, y, group)
        ``label`` is written next to the marker; ``group`` (a mode, say) picks its colour
        and shape. ``y = +inf`` (a lossless PSNR) is drawn in a band above the axis marked
        ``inf_label``; points with a NaN or negative-infinite coordinate, or ``x <= 0`` on a
        log axis, are left out (a note at the bottom counts them).
    title : str, optional
        Heading.
    x_label, y_label : str
        Axis titles.
    size : (int, int)
        Image size in px.
    x_log : bool, optional
        Logarithmic x axis; by default when every x is positive and they span more than a
        factor 30.
    legend_title : str
        Heading of the legend.
    inf_label : str
        Tick text of the band holding infinite y values.

    Returns
    -------
    PIL.Image.Image
        RGB. ``info['plot_box']`` is the data area ``(left, top, right, bottom)`` and
        ``info['markers']`` a list of ``(label, x_px, y_px)`` for every point drawn.

    Examples
    --------
    >>> im = scatter_plot([("2x2", 1.0, 30.0, "max"), ("2x2", 2.0, float("inf"), "avg")])
    >>> im.size, len(im.info["markers"])
    ((960, 600), 2)
    """
    width, height = size
    pts = [(str(lbl), float(x), float(y), str(g)) for lbl, x, y, g in points]
    groups = list(dict.fromkeys(g for *_, g in pts))
    style = {g: (PALETTE[i % len(PALETTE)], MARKERS[i % len(MARKERS)])
             for i, g in enumerate(groups)}
    xs = np.array([p[1] for p in pts], dtype=float)
    ys = np.array([p[2] for p in pts], dtype=float)
    usable_x = np.isfinite(xs)
    if x_log is None:
        pos = xs[usable_x & (xs > 0)]
        x_log = bool(pos.size and pos.size == usable_x.sum() and pos.max() / pos.min() > 30)
    if x_log:
        usable_x &= xs > 0
    keep = usable_x & ~np.isnan(ys) & (ys != -np.inf)
    dropped = int((~keep).sum())
    has_inf = bool((keep & (ys == np.inf)).any())
    finite = keep & np.isfinite(ys)

    font = get_font(14)
    small = get_font(12)
    title_font = get_font(18)
    lh, slh = _line_height(font), _line_height(small)

    # data ranges
    if finite.any():
        y_lo, y_hi = float(ys[finite].min()), float(ys[finite].max())
    else:
        y_lo, y_hi = 0.0, 1.0
    if y_hi - y_lo < 1e-9:
        y_lo, y_hi = y_lo - 1, y_hi + 1
    pad = 0.08 * (y_hi - y_lo)
    y_lo, y_hi = y_lo - pad, y_hi + pad
    kx = xs[keep]
    if kx.size:
        x_lo, x_hi = float(kx.min()), float(kx.max())
    else:
        x_lo, x_hi = (1.0, 10.0) if x_log else (0.0, 1.0)
    if x_log:
        if x_hi / x_lo < 1.0001:
            x_lo, x_hi = x_lo / 2, x_hi * 2
        f = 1.25
        x_lo, x_hi = x_lo / f, x_hi * f
    else:
        if x_hi - x_lo < 1e-12:
            x_lo, x_hi = x_lo - max(abs(x_lo) * 0.5, 0.5), x_hi + max(abs(x_hi) * 0.5, 0.5)
        span = x_hi - x_lo
        x_lo, x_hi = x_lo - 0.08 * span, x_hi + 0.12 * span
        if x_lo < 0 <= float(kx.min() if kx.size else 0):
            x_lo = 0.0
    y_ticks = [t for t in nice_ticks(y_lo, y_hi) if y_lo <= t <= y_hi]
    x_ticks = _log_ticks(x_lo, x_hi) if x_log else [t for t in nice_ticks(x_lo, x_hi)
                                                     if x_lo <= t <= x_hi]

    # layout
    legend_w = max([_text_width(font, g) for g in groups] + [_text_width(font, legend_title)]
                   + [0]) + 44
    y_tick_w = max([_text_width(font, _tick_text(t)) for t in y_ticks]
                   + [_text_width(font, inf_label)]) + 10
    left = 18 + lh + 8 + y_tick_w
    right = width - 24 - legend_w
    top = 16 + (_line_height(title_font) + 8 if title else 0)
    inf_band = (2 * lh) if has_inf else 0
    note_lines = []
    if has_inf:
        note_lines.append(f"{inf_label}: lossless (the output reproduces the input exactly); "
                          f"drawn above the axis")
    if dropped:
        note_lines.append(f"{dropped} point{'s' if dropped > 1 else ''} without a usable "
                          f"value left out")
    bottom = height - 16 - lh - 6 - lh - 8 - len(note_lines) * slh
    plot_top = top + inf_band

    im = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(im)
    if title:
        draw.text((left, 12), title, fill=TEXT, font=title_font)
    draw.rectangle([left, top, right, bottom], fill=PLOT_BG)

    def fx(v):
        if x_log:
            t = (math.log10(v) - math.log10(x_lo)) / (math.log10(x_hi) - math.log10(x_lo))
        else:
            t = (v - x_lo) / (x_hi - x_lo)
        return left + t * (right - left)

    def fy(v):
        if v == np.inf:
            return top + inf_band / 2
        return bottom - (v - y_lo) / (y_hi - y_lo) * (bottom - plot_top)

    for t in y_ticks:
        py = round(fy(t))
        draw.line([(left, py), (right, py)], fill=GRID)
        draw.line([(left - 5, py), (left, py)], fill=AXIS)
        text = _tick_text(t)
        draw.text((left - 8 - _text_width(font, text), py - lh // 2), text, fill=TEXT, font=font)
    for t in x_ticks:
        px = round(fx(t))
        draw.line([(px, top), (px, bottom)], fill=GRID)
        draw.line([(px, bottom), (px, bottom + 5)], fill=AXIS)
        text = _tick_text(t)
        draw.text((px - _text_width(font, text) // 2, bottom + 7), text, fill=TEXT, font=font)
    if has_inf:
        py = round(plot_top)
        for x0 in range(left, right, 8):
            draw.line([(x0, py), (min(x0 + 4, right), py)], fill=BORDER)
        text = inf_label
        draw.text((left - 8 - _text_width(font, text), round(fy(np.inf)) - lh // 2), text,
                  fill=TEXT, font=font)
    draw.rectangle([left, top, right, bottom], outline=BORDER)
    draw.line([(left, top), (left, bottom)], fill=AXIS)
    draw.line([(left, bottom), (right, bottom)], fill=AXIS)

    # axis titles
    x_title = x_label + (" (log scale)" if x_log else "")
    draw.text(((left + right) // 2 - _text_width(font, x_title) // 2, bottom + 8 + lh),
              x_title, fill=TEXT, font=font)
    vt = _vertical_text(y_label, font, TEXT, BACKGROUND)
    im.paste(vt, (16, (plot_top + bottom) // 2 - vt.height // 2))
    for j, line in enumerate(note_lines):
        draw.text((left, height - 12 - (len(note_lines) - j) * slh), line, fill=TEXT_DIM,
                  font=small)

    # markers, then labels placed where they collide with nothing
    r = 6
    drawn, boxes = [], []
    for (label, x, y, g), ok in zip(pts, keep):
        if not ok:
            continue
        px, py = fx(x), fy(y)
        colour, shape = style[g]
        _draw_marker(draw, shape, px, py, r, colour)
        drawn.append((label, round(px), round(py)))
        boxes.append((px - r - 1, py - r - 1, px + r + 1, py + r + 1))
    for label, px, py in drawn:
        if not label:
            continue
        tw, th = _text_width(small, label), slh
        candidates = [(px + r + 4, py - th / 2), (px - r - 4 - tw, py - th / 2),
                      (px - tw / 2, py - r - 3 - th), (px - tw / 2, py + r + 3),
                      (px + r + 3, py - r - th), (px + r + 3, py + r),
                      (px - r - 3 - tw, py - r - th), (px - r - 3 - tw, py + r)]
        chosen = None
        for cx, cy in candidates:
            box = (cx, cy, cx + tw, cy + th)
            inside = box[0] >= left + 2 and box[2] <= right - 2 and box[1] >= top + 1 \
                and box[3] <= bottom - 1
            if inside and not _overlaps(box, boxes):
                chosen = box
                break
        if chosen is None:
            cx, cy = candidates[0]
            cx = min(max(cx, left + 2), right - 2 - tw)
            chosen = (cx, cy, cx + tw, cy + th)
        boxes.append(chosen)
        draw.text((chosen[0], chosen[1]), label, fill=TEXT_DIM, font=small)

    # legend, right of the plot
    lx = right + 16
    ly = plot_top
    draw.text((lx, ly), legend_title, fill=TEXT, font=font)
    for i, g in enumerate(groups):
        yy = ly + (i + 1) * (lh + 6)
        colour, shape = style[g]
        _draw_marker(draw, shape, lx + 8, yy + lh / 2, r, colour)
        draw.text((lx + 22, yy), g, fill=TEXT, font=font)

    im.info["plot_box"] = (left, top, right, bottom)
    im.info["markers"] = drawn
    return im


def points_from_rows(rows) -> list[tuple[str, float, float, str]]:
    """Points for :func:`scatter_plot` from :func:`pool_cli.visual.analysis.analyze` rows.

    The label is the geometry (``'2x2/2'``: window / stride), the group the mode.

    Examples
    --------
    >>> points_from_rows([{"mode": "max", "label": "2x2/2", "time_ms_median": 1.5,
    ...                    "psnr_db": 31.0}])
    [('2x2/2', 1.5, 31.0, 'max')]
    """
    return [(row["label"], row["time_ms_median"], row["psnr_db"], row["mode"]) for row in rows]
