"""Tests of pool_cli.visual: colour maps, fidelity metrics, upscaling, sheets, grids, plots.

Every picture made here is written as PNG and opened again with Pillow before it is checked,
so the checks see what a user would see.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pool_cli import PoolError, make_spec, pool
from pool_cli.visual.analysis import analyze, geometry_label
from pool_cli.visual.colormaps import (
    COLORMAPS, apply_colormap, get_colormap, lightness, moreland_diverging, srgb_to_lab,
)
from pool_cli.visual.metrics import (
    default_data_range, energy_kept, gaussian_window, nearest_indices, psnr, ssim, ssim_maps,
    ssim_scorer, upscale_nearest,
)
from pool_cli.visual.plot import nice_ticks, points_from_rows, scatter_plot
from pool_cli.visual.render import (
    BACKGROUND, colorbar, compare_sheet, compose_sheet, describe_geometry, display_range,
    feature_grid, format_value, image_to_rgb, select_channels,
)


def reopen(image: Image.Image) -> Image.Image:
    """Write as PNG and read back, keeping the layout info the sheet carried."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    buffer.seek(0)
    again = Image.open(buffer)
    again.load()
    assert again.mode == "RGB" and again.size == image.size
    for key in ("panel_boxes", "label_boxes", "plot_box", "markers"):
        if key in image.info:
            again.info[key] = image.info[key]
    return again


def pixels(image: Image.Image, box=None) -> np.ndarray:
    a = np.asarray(image)
    if box is None:
        return a
    left, top, right, bottom = (int(round(v)) for v in box)
    return a[top:bottom, left:right]


def centre(box) -> tuple[int, int]:
    left, top, right, bottom = box
    return (left + right) // 2, (top + bottom) // 2


def has_text(image: Image.Image, box) -> bool:
    """Dark pixels (text) inside a box of a light sheet."""
    region = pixels(image, box).astype(int)
    return bool((region.max(axis=-1) < 120).sum() >= 10)


def checkerboard_1px(n: int = 16) -> np.ndarray:
    return (np.indices((n, n)).sum(axis=0) % 2 * 255).astype(np.uint8)


# ----------------------------------------------------------------------------- colour maps

class TestColormaps:
    def test_tables_are_256_srgb_triples(self):
        for name in ("viridis", "gray", "coolwarm"):
            table = COLORMAPS[name]
            assert table.shape == (256, 3)
            assert table.min() >= 0 and table.max() <= 1

    def test_viridis_matches_published_values(self):
        lut = get_colormap("viridis")
        assert lut[0].tolist() == [0x44, 0x01, 0x54]
        assert lut[255].tolist() == [0xFD, 0xE7, 0x25]
        assert lut[128].tolist() == [0x21, 0x91, 0x8C]

    @pytest.mark.parametrize("name", ["viridis", "gray"])
    def test_sequential_lightness_strictly_increases(self, name):
        L = lightness(COLORMAPS[name])
        assert np.all(np.diff(L) > 0)
        # after rounding to 8 bits it may stall, but never falls by a visible step
        assert np.diff(lightness(get_colormap(name))).min() > -0.1
        assert L[-1] - L[0] > 70

    def test_viridis_luminance_strictly_increases(self):
        Y = COLORMAPS["viridis"] @ np.array([0.2126, 0.7152, 0.0722])
        assert np.all(np.diff(Y) > 0)

    def test_diverging_lightness_rises_to_the_middle_then_falls(self):
        L = lightness(COLORMAPS["coolwarm"])
        peak = int(np.argmax(L))
        assert peak in (127, 128)
        assert np.all(np.diff(L[:peak + 1]) > 0)
        assert np.all(np.diff(L[peak:]) < 0)
        assert abs(L[0] - L[-1]) < 5  # both ends equally dark

    def test_coolwarm_matches_morelands_published_table(self):
        # CoolWarmFloat33 of Moreland's "Diverging Color Maps for Scientific Visualization"
        published = {0.0: (0.2298057, 0.298717966, 0.753683153),
                     0.25: (0.552953156, 0.688929332, 0.995375608),
                     0.5: (0.865395197, 0.86541021, 0.865395561),
                     0.6875: (0.969954137, 0.694266682, 0.579375448),
                     0.84375: (0.89904617, 0.439559467, 0.343229596),
                     1.0: (0.705673158, 0.01555616, 0.150232812)}
        got = moreland_diverging(list(published))
        assert np.abs(got - np.array(list(published.values()))).max() < 1 / 255

    def test_lab_of_known_colours(self):
        assert np.allclose(srgb_to_lab([1.0, 1.0, 1.0]), [100, 0, 0], atol=1e-3)
        assert np.allclose(srgb_to_lab([0.0, 0.0, 0.0]), [0, 0, 0], atol=1e-9)
        assert abs(srgb_to_lab([0.5, 0.5, 0.5])[0] - 53.389) < 0.01

    def test_apply_colormap(self):
        out = apply_colormap(np.array([[-1.0, 0.0], [1.0, 2.0]]), "gray")
        assert out.dtype == np.uint8 and out.shape == (2, 2, 3)
        assert out[..., 0].tolist() == [[0, 0], [255, 255]]
        assert apply_colormap([np.nan], "viridis")[0].tolist() == [255, 0, 255]
        reversed_first = apply_colormap([0.0], "viridis_r")[0]
        assert reversed_first.tolist() == get_colormap("viridis")[255].tolist()
        with pytest.raises(ValueError, match="unknown colour map"):
            apply_colormap([0.5], "jet")


# ----------------------------------------------------------------------------- metrics

def brute_force_ssim(x, y, L):
    """SSIM of two 2-D arrays by explicit loops over every 11x11 window (Wang et al. 2004)."""
    g = gaussian_window(11, 1.5)
    w = np.outer(g, g)
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    scores = []
    for i in range(x.shape[0] - 10):
        for j in range(x.shape[1] - 10):
            a, b = x[i:i + 11, j:j + 11], y[i:i + 11, j:j + 11]
            ma, mb = (w * a).sum(), (w * b).sum()
            va, vb = (w * (a - ma) ** 2).sum(), (w * (b - mb) ** 2).sum()
            cov = (w * (a - ma) * (b - mb)).sum()
            scores.append((2 * ma * mb + c1) * (2 * cov + c2)
                          / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2)))
    return float(np.mean(scores))


class TestPSNR:
    def test_by_hand(self):
        ref = np.array([[0, 10], [20, 30]], np.uint8)
        test = np.array([[1, 10], [20, 33]], np.uint8)
        mse = (1 + 9) / 4
        assert psnr(ref, test) == pytest.approx(10 * math.log10(255 ** 2 / mse), abs=1e-12)
        assert psnr(ref, test, data_range=100) == pytest.approx(10 * math.log10(100 ** 2 / mse))

    def test_identical_is_infinite_and_uint8_differences_do_not_wrap(self):
        a = np.array([0, 255], np.uint8)
        assert psnr(a, a) == math.inf
        # 0 - 255 in uint8 would wrap to 1; computed in float64 it is 255
        assert psnr(a, a[::-1]) == pytest.approx(0.0)

    def test_data_range_by_dtype(self):
        assert default_data_range(np.zeros(2, np.uint8)) == 255
        assert default_data_range(np.zeros(2, np.uint16)) == 65535
        assert default_data_range(np.array([-1.0, 3.0])) == 4.0
        assert default_data_range(np.full(3, 2.5)) == 1.0
        assert default_data_range(np.array([True, False])) == 1.0

    def test_values_whose_squares_overflow_give_what_smaller_ones_give(self):
        # PSNR is the same when the data and L are scaled together, and scaling by a power of
        # two is exact: 2**700 (5e210) must score as 1 does, not overflow L**2 or the MSE
        x = np.array([[0.0, 3.0], [5.0, 1.0]])
        y = np.array([[1.0, 3.0], [4.0, 2.0]])
        big = 2.0 ** 700
        assert psnr(x * big, y * big) == psnr(x, y)
        assert psnr(x * big, y * big, data_range=8 * big) == psnr(x, y, 8)

    def test_a_span_past_float64s_range_still_scores(self):
        x = np.array([1e308, -1e308])  # max - min overflows to inf
        assert psnr(x, x[::-1]) == pytest.approx(0.0)  # every error is the whole span
        assert psnr(x, np.zeros(2)) == pytest.approx(10 * math.log10(4))


class TestSSIM:
    def test_identical_gives_exactly_one(self):
        rng = np.random.default_rng(1)
        x = rng.integers(0, 256, (24, 30), dtype=np.uint8)
        assert ssim(x, x) == 1.0
        assert ssim(x.astype(float), x.astype(float)) == 1.0

    def test_matches_brute_force_definition(self):
        rng = np.random.default_rng(2)
        x = rng.uniform(0, 255, (15, 17))
        y = np.clip(x + rng.normal(0, 20, x.shape), 0, 255)
        assert ssim(x, y, 255) == pytest.approx(brute_force_ssim(x, y, 255), abs=1e-12)

    @pytest.mark.parametrize("shape, layout", [((15, 17), None), ((3, 14, 16), None),
                                               ((14, 16, 3), "HWC"), ((2, 3, 12, 13), "NCHW")])
    def test_scorer_gives_the_bits_of_ssim(self, shape, layout):
        # the reference is filtered once; every test must still score exactly as ssim() does,
        # with uint8's default data range (255) taken from the reference as given
        rng = np.random.default_rng(4)
        x = rng.integers(0, 256, shape, dtype=np.uint8)
        score = ssim_scorer(x, layout=layout)
        for noise in (0, 5, 40):
            y = np.clip(x + rng.normal(0, noise, shape), 0, 255)
            assert score(y) == ssim(x, y, layout=layout)
        assert score(x) == 1.0
        with pytest.raises(ValueError, match="shapes differ"):
            score(x[..., :-1])

    def test_symmetric(self):
        rng = np.random.default_rng(3)
        x = rng.uniform(0, 1, (20, 20))
        y = rng.uniform(0, 1, (20, 20))
        assert ssim(x, y, 1.0) == pytest.approx(ssim(y, x, 1.0), abs=1e-15)
        assert -1 <= ssim(x, y, 1.0) < 0.2  # independent noise: little structure shared

    def test_constant_shift_by_hand(self):
        # x = 100 everywhere, y = 110: only the luminance factor is below 1
        x = np.full((11, 11), 100.0)
        c1 = (0.01 * 255) ** 2
        expected = (2 * 100 * 110 + c1) / (100 ** 2 + 110 ** 2 + c1)
        lum, cs = ssim_maps(x, x + 10, 255)
        assert lum.shape == cs.shape == (1, 1)
        assert lum[0, 0] == pytest.approx(expected, abs=1e-12)
        assert cs[0, 0] == pytest.approx(1.0, abs=1e-12)
        assert ssim(x, x + 10, 255) == pytest.approx(expected, abs=1e-12)

    def test_constant_shift_lowers_only_luminance(self):
        rng = np.random.default_rng(4)
        x = rng.uniform(50, 200, (16, 18))
        lum, cs = ssim_maps(x, x + 12.0, 255)
        assert np.allclose(cs, 1.0, atol=1e-9)
        assert np.all(lum < 1)
        # the luminance factor from the local means, computed independently
        g = gaussian_window()
        w = np.outer(g, g)
        c1 = (0.01 * 255) ** 2
        means = np.array([[(w * x[i:i + 11, j:j + 11]).sum() for j in range(8)]
                          for i in range(6)])
        expected = (2 * means * (means + 12) + c1) / (means ** 2 + (means + 12) ** 2 + c1)
        assert np.allclose(lum, expected, atol=1e-12)

    def test_contrast_change_keeps_luminance_near_one(self):
        rng = np.random.default_rng(5)
        x = rng.uniform(-1, 1, (14, 14))
        lum, cs = ssim_maps(x, 0.5 * x, 2.0)
        assert np.all(cs < 1)

    def test_channels_are_averaged_and_layout_is_honoured(self):
        rng = np.random.default_rng(6)
        x = rng.uniform(0, 255, (14, 16, 3))
        y = np.clip(x + rng.normal(0, 25, x.shape), 0, 255)
        per_channel = [ssim(x[..., c], y[..., c], 255) for c in range(3)]
        assert ssim(x, y, 255, "HWC") == pytest.approx(np.mean(per_channel), abs=1e-12)
        assert ssim(np.moveaxis(x, 2, 0), np.moveaxis(y, 2, 0), 255, "CHW") == pytest.approx(
            np.mean(per_channel), abs=1e-12)

    def test_small_inputs_use_a_window_that_fits(self):
        x = np.arange(36.0).reshape(6, 6)
        assert ssim(x, x) == 1.0
        assert ssim(x, x[::-1]) < 1

    def test_gaussian_window(self):
        g = gaussian_window()
        assert g.size == 11 and g.sum() == pytest.approx(1.0)
        assert g[5] / g[4] == pytest.approx(math.exp(1 / (2 * 1.5 ** 2)))

    def test_values_whose_squares_overflow_give_what_smaller_ones_give(self):
        # (K1 L)**2 overflowed for L past 1e156; SSIM is the same when the data and L are
        # scaled together, so 2**700 times the data must score exactly as the data does
        rng = np.random.default_rng(16)
        x = rng.uniform(0, 255, (14, 15))
        y = np.clip(x + rng.normal(0, 20, x.shape), 0, 255)
        big = 2.0 ** 700
        assert ssim(x * big, y * big) == ssim(x, y) < 1
        assert ssim(x * big, y * big, 255 * big) == ssim(x, y, 255)
        assert ssim_scorer(x * big)(y * big) == ssim(x, y)
        lum, cs = ssim_maps(x * big, y * big)
        assert np.array_equal(lum * cs, np.prod(ssim_maps(x, y), axis=0))


class TestEnergyKept:
    def test_by_hand(self):
        x = np.array([[0.0, 2.0], [4.0, 6.0]])
        assert energy_kept(x, x) == 1.0
        assert energy_kept(x, np.full_like(x, 3.0)) == 0.0
        # residual 4 x 1 = 4, energy about the mean 9 + 1 + 1 + 9 = 20
        assert energy_kept(x, np.array([[1.0, 1.0], [5.0, 5.0]])) == pytest.approx(0.8)
        assert energy_kept(x, -x) == 0.0  # clipped

    def test_avg_tiling_is_an_orthogonal_projection(self):
        rng = np.random.default_rng(7)
        x = rng.normal(size=(12, 18))
        plan = make_spec("avg", window=3).plan(x.shape)
        up = upscale_nearest(pool(x, "avg", window=3), x.shape, plan)
        centred = x - x.mean()
        expected = np.sum((up - x.mean()) ** 2) / np.sum(centred ** 2)
        assert energy_kept(x, up) == pytest.approx(expected, rel=1e-12)

    def test_constant_input(self):
        x = np.full((4, 4), 3.0)
        assert energy_kept(x, x) == 1.0
        assert energy_kept(x, x + 1) == 0.0

    def test_values_whose_squares_overflow_give_what_smaller_ones_give(self):
        x = np.array([[0.0, 2.0], [4.0, 6.0]])
        u = np.array([[1.0, 1.0], [5.0, 5.0]])
        big = 2.0 ** 1000  # 1e301: the sums of squares overflow float64
        assert energy_kept(x * big, u * big) == energy_kept(x, u) == pytest.approx(0.8)
        assert energy_kept(x * big, np.full_like(x, np.inf)) == 0.0  # nothing kept


class TestUpscale:
    def test_stride_equal_to_window_is_repeat_then_edge(self):
        rng = np.random.default_rng(8)
        x = rng.integers(0, 100, (7, 9, 2))
        plan = make_spec("max", window=2, layout="HWC").plan(x.shape)
        y = pool(x, "max", window=2, layout="HWC")
        up = upscale_nearest(y, x.shape, plan)
        rep = np.repeat(np.repeat(y, 2, axis=0), 2, axis=1)
        assert up.shape == x.shape and up.dtype == y.dtype
        assert np.array_equal(up[:6, :8], rep)
        assert np.array_equal(up[6], up[5]) and np.array_equal(up[:, 8], up[:, 7])

    def test_padding_and_ceil_mode_shift_the_blocks(self):
        plan = make_spec("max", window=2, padding=1).plan((5,))
        assert nearest_indices(plan, 0).tolist() == [0, 1, 1, 2, 2]
        plan = make_spec("max", window=2, ceil_mode=True).plan((5,))
        assert nearest_indices(plan, 0).tolist() == [0, 0, 1, 1, 2]

    @settings(max_examples=60)
    @given(length=st.integers(1, 30), window=st.integers(1, 5), stride=st.integers(1, 5),
           dilation=st.integers(1, 2), pad=st.integers(0, 4), ceil=st.booleans())
    def test_each_cell_shows_a_window_that_covers_it(self, length, window, stride, dilation,
                                                     pad, ceil):
        span = dilation * (window - 1) + 1
        pad = min(pad, span - 1) if span > 1 else 0
        try:
            plan = make_spec("max", window=window, stride=stride, dilation=dilation,
                             padding=pad, ceil_mode=ceil).plan((length,))
        except PoolError:
            return
        g = plan.geometry[0]
        index = nearest_indices(plan, 0)
        assert index.shape == (length,) and index.min() >= 0 and index.max() < g.out
        starts = np.arange(g.out) * g.stride - g.pad_begin
        for i, o in enumerate(index):
            covering = np.flatnonzero((starts <= i) & (i < starts + g.span))
            if covering.size and stride <= span:
                assert covering.min() <= o <= covering.max()
            # and it is the nearest window centre there is
            centres = starts + (g.span - 1) / 2
            assert abs(centres[o] - i) <= np.abs(centres - i).min() + 1e-9 or \
                o in (0, g.out - 1)

    def test_adaptive_global_and_planless(self):
        x = np.arange(10.0)
        plan = make_spec("avg", output_size=3).plan(x.shape)
        assert nearest_indices(plan, 0).tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
        g = make_spec("max", global_pool=True).plan((3, 4))
        assert upscale_nearest(np.array([[9]]), (3, 4), g).tolist() == [[9] * 4] * 3
        assert upscale_nearest(np.array([[1, 2]]), (2, 4)).tolist() == [[1, 1, 2, 2]] * 2

    def test_mismatches_are_refused(self):
        plan = make_spec("max", window=2).plan((4, 4))
        with pytest.raises(ValueError):
            upscale_nearest(np.zeros((3, 2)), (4, 4), plan)
        with pytest.raises(ValueError):
            upscale_nearest(np.zeros((2, 2)), (4, 6), plan)


# ----------------------------------------------------------------------------- images

class TestImageToRGB:
    def test_grey_colour_and_16_bit(self):
        grey = np.array([[0, 128, 255]], np.uint8)
        assert image_to_rgb(grey)[0, :, 0].tolist() == [0, 128, 255]
        rgb = np.array([[[10, 20, 30]]], np.uint8)
        assert image_to_rgb(rgb).tolist() == [[[10, 20, 30]]]
        assert image_to_rgb(np.moveaxis(rgb, 2, 0), "CHW").tolist() == [[[10, 20, 30]]]
        sixteen = np.array([[0, 257 * 100, 65535]], np.uint16)
        assert image_to_rgb(sixteen)[0, :, 1].tolist() == [0, 100, 255]

    def test_floats(self):
        unit = np.array([[0.0, 0.5, 1.0]])
        assert image_to_rgb(unit)[0, :, 0].tolist() == [0, 128, 255]
        wide = np.array([[-2.0, 0.0, 2.0]])
        assert image_to_rgb(wide)[0, :, 0].tolist() == [0, 128, 255]
        assert image_to_rgb(np.array([[np.nan, 1.0]]))[0, 0].tolist() == [0, 0, 0]
        assert image_to_rgb(np.array([[127.5]]), value_range=(0, 255))[0, 0, 0] == 128

    def test_alpha_is_composited_over_a_checkerboard(self):
        rgba = np.zeros((16, 16, 4), np.uint8)
        rgba[..., 0] = 200
        rgba[:, 8:, 3] = 255
        out = image_to_rgb(rgba, checker=4)
        assert out[0, 0].tolist() == [255, 255, 255] and out[0, 4].tolist() == [204, 204, 204]
        assert out[4, 0].tolist() == [204, 204, 204]
        assert np.all(out[:, 8:] == [200, 0, 0])
        la = np.zeros((2, 2, 2), np.uint8)
        la[..., 0] = 50
        la[0, 0, 1] = 255
        half = image_to_rgb(la, checker=1)
        assert half[0, 0].tolist() == [50, 50, 50] and half[0, 1].tolist() == [204, 204, 204]

    def test_refuses_what_is_not_an_image(self):
        with pytest.raises(ValueError, match="1 to 4 channels"):
            image_to_rgb(np.zeros((4, 4, 5)))
        with pytest.raises(ValueError):
            image_to_rgb(np.zeros((2, 4, 4, 3)))

    def test_display_range(self):
        assert display_range(np.array([True])) == (0.0, 1.0)
        assert display_range(np.array([3, 9], np.int32)) == (3.0, 9.0)
        assert display_range(np.array([np.nan, np.inf])) == (0.0, 1.0)


# ----------------------------------------------------------------------------- sheets

class TestComposeSheet:
    def test_geometry_and_labels(self):
        red = np.zeros((40, 60, 3), np.uint8)
        red[..., 0] = 255
        blue = np.zeros((30, 50, 3), np.uint8)
        blue[..., 2] = 255
        sheet = reopen(compose_sheet([("red", red), (["blue", "second line"], blue),
                                      ("grey", np.full((40, 60), 90, np.uint8))],
                                     columns=2, title="Title", notes=["a note"]))
        boxes = sheet.info["panel_boxes"]
        assert [(b[2] - b[0], b[3] - b[1]) for b in boxes] == [(60, 40), (50, 30), (60, 40)]
        # same row, same top; second row below the first
        assert boxes[0][1] == boxes[1][1] and boxes[2][1] > boxes[0][3]
        assert boxes[0][0] == boxes[2][0]
        assert sheet.getpixel(centre(boxes[0])) == (255, 0, 0)
        assert sheet.getpixel(centre(boxes[1])) == (0, 0, 255)
        assert sheet.getpixel(centre(boxes[2])) == (90, 90, 90)
        for label in sheet.info["label_boxes"]:
            assert has_text(sheet, label)
        assert sheet.getpixel((3, 3)) == BACKGROUND
        # the title sits above the first label, the note below the last panel
        assert has_text(sheet, (0, 0, sheet.width, sheet.info["label_boxes"][0][1]))
        assert has_text(sheet, (0, boxes[2][3] + 2, sheet.width, sheet.height))

    def test_automatic_columns_stay_within_the_width(self):
        tile = np.zeros((100, 300, 3), np.uint8)
        sheet = compose_sheet([(str(i), tile) for i in range(5)], max_width=1000)
        assert sheet.width <= 1000
        tops = sorted({b[1] for b in sheet.info["panel_boxes"]})
        assert len(tops) == 2  # 3 + 2 rather than 3 + 1 + 1

    def test_refuses_bad_panels(self):
        with pytest.raises(ValueError):
            compose_sheet([])
        with pytest.raises(ValueError):
            compose_sheet([("x", np.zeros((4, 4, 3)))])  # float, not uint8


class TestCompareSheet:
    def test_one_pixel_checkerboard(self):
        board = checkerboard_1px(16)
        result = compare_sheet(board, ["max", "min", "avg"], "HW", window=2, title="board")
        sheet = reopen(result.image)
        boxes = sheet.info["panel_boxes"]
        assert len(boxes) == 4
        # a 16 px input is shown enlarged 16x: every panel 256 x 256
        assert all((b[2] - b[0], b[3] - b[1]) == (256, 256) for b in boxes)
        assert any("enlarged 16x" in note for note in result.notes)
        inp, mx, mn, avg = (pixels(sheet, b) for b in boxes)
        assert set(np.unique(inp).tolist()) == {0, 255}
        assert sheet.getpixel(centre(boxes[1])) == (255, 255, 255)
        assert sheet.getpixel(centre(boxes[2])) == (0, 0, 0)
        assert sheet.getpixel(centre(boxes[3])) == (128, 128, 128)
        assert np.all(mx == 255) and np.all(mn == 0) and np.all(avg == 128)
        for label in sheet.info["label_boxes"]:
            assert has_text(sheet, label)
        assert [r["mode"] for r in result.rows] == ["max", "min", "avg"]
        assert all(r["output_shape"] == [8, 8] and r["time_ms"] >= 0 for r in result.rows)
        assert result.rows[0]["window"] == [2, 2]

    def test_blocks_stay_at_the_input_scale(self):
        x = np.zeros((8, 8), np.uint8)
        x[0, 0] = 255  # one bright pixel: max pooling 4x4 lights the whole top-left block
        sheet = reopen(compare_sheet(x, ["max"], "HW", window=4, min_panel=8).image)
        panel = pixels(sheet, sheet.info["panel_boxes"][1])
        assert panel.shape[:2] == (8, 8)
        assert np.all(panel[:4, :4] == 255) and np.all(panel[4:] == 0) and np.all(panel[:, 4:] == 0)

    def test_colour_image_with_alpha(self):
        rgba = np.zeros((32, 32, 4), np.uint8)
        rgba[..., 1] = 180
        rgba[16:, :, 3] = 255  # top half transparent, bottom opaque green
        result = compare_sheet(rgba, ["max", "avg"], "HWC", window=2, min_panel=32)
        sheet = reopen(result.image)
        for box in sheet.info["panel_boxes"]:
            block = pixels(sheet, box)
            assert np.all(block[20:] == [0, 180, 0])
            assert set(map(tuple, block[:16].reshape(-1, 3))) == {(255, 255, 255), (204, 204, 204)}

    def test_outputs_off_the_input_scale_are_noted(self):
        x = np.random.default_rng(9).integers(0, 256, (16, 16), dtype=np.uint8)
        result = compare_sheet(x, ["sum", "lp"], "HW", window=2, power=3)
        assert any(note.startswith("sum:") for note in result.notes)
        assert any(note.startswith("lp (p=3):") for note in result.notes)

    def test_feature_map(self):
        f = np.random.default_rng(10).normal(size=(3, 20, 24)).astype(np.float32)
        result = compare_sheet(f, ["max", "avg"], window=4)
        sheet = reopen(result.image)
        assert len(sheet.info["panel_boxes"]) == 3
        assert result.rows[1]["output_shape"] == [3, 5, 6]

    def test_errors(self):
        with pytest.raises(PoolError):
            compare_sheet(np.zeros((4, 4), np.uint8), ["median"])
        with pytest.raises(PoolError):
            compare_sheet(np.zeros((4, 4), np.uint8), ["max"], window=8)

    def test_a_2d_array_without_a_layout_is_a_feature_map_with_hw_an_image(self):
        # .npy files reach compare_sheet without a layout, decoded pictures with HW or HWC:
        # a 2-D array is one colour-mapped map (NaN magenta, its range labelled), exactly as
        # the same data with a channel axis of 1; with layout HW a grey image (NaN black)
        x = np.arange(64.0).reshape(8, 8)
        x[0, 0] = np.nan
        as_map = compare_sheet(x, ["max"], window=2)
        sheet = reopen(as_map.image)
        magenta = np.all(pixels(sheet) == (255, 0, 255), axis=-1)
        assert magenta.any()
        assert [r["output_shape"] for r in as_map.rows] == [[4, 4]]
        grid = reopen(feature_grid(x, None, max_tiles=16, max_width=1200, paged=False)[0])
        assert np.array_equal(pixels(sheet, sheet.info["panel_boxes"][0]), pixels(grid))
        one_channel = reopen(compare_sheet(x[None], ["max"], window=2).image)
        assert magenta.sum() == np.all(pixels(one_channel) == (255, 0, 255), axis=-1).sum()
        image = reopen(compare_sheet(x, ["max"], "HW", window=2, min_panel=8).image)
        assert not np.all(pixels(image) == (255, 0, 255), axis=-1).any()
        assert pixels(image, image.info["panel_boxes"][0])[0, 0].tolist() == [0, 0, 0]


class TestFeatureGrid:
    def ramps(self, channels=3, h=8, w=16):
        base = np.tile(np.linspace(0.0, 1.0, w), (h, 1))
        return np.stack([base * (c + 1) - c for c in range(channels)])

    def test_tiles_labels_and_channel_normalisation(self):
        f = self.ramps()
        grid, notes = feature_grid(f, "CHW", min_tile=16)
        grid = reopen(grid)
        assert notes == []
        boxes = grid.info["panel_boxes"]
        assert len(boxes) == 3
        assert all((b[2] - b[0], b[3] - b[1]) == (16, 8) for b in boxes)
        lut = get_colormap("viridis")
        for box in boxes:
            tile = pixels(grid, box)
            assert tile[4, 0].tolist() == lut[0].tolist()
            assert tile[4, -1].tolist() == lut[255].tolist()
        for label in grid.info["label_boxes"]:
            assert has_text(grid, label)

    def test_global_normalisation(self):
        f = np.zeros((2, 4, 4))
        f[1] = 1.0
        f[0, 0, 0] = 0.5
        grid = reopen(feature_grid(f, "CHW", normalize="global", cmap="gray", min_tile=4)[0])
        first, second = (pixels(grid, b) for b in grid.info["panel_boxes"])
        assert first[0, 0].tolist() == [128] * 3 and first[3, 3].tolist() == [0] * 3
        assert np.all(second == 255)

    def test_diverging_map_is_centred_on_zero(self):
        f = np.array([[[-1.0, 0.0, 3.0]]])
        grid = reopen(feature_grid(f, "CHW", cmap="coolwarm", min_tile=3)[0])
        tile = pixels(grid, grid.info["panel_boxes"][0])
        lut = get_colormap("coolwarm")
        assert tile[0, 1].tolist() == lut[128].tolist()  # 0 -> the grey middle
        assert tile[0, 2].tolist() == lut[255].tolist()
        assert tile[0, 0].tolist() == lut[int(256 * (1 / 3))].tolist()

    def test_channels_paging_and_caps(self):
        f = np.random.default_rng(11).normal(size=(70, 4, 4))
        grid, notes = feature_grid(f, max_tiles=64, min_tile=8)
        assert len(grid.info["panel_boxes"]) == 64
        assert notes and "64 of 70" in notes[0] and "page 1 of 2" in notes[0]
        grid, notes = feature_grid(f, max_tiles=64, page=1, min_tile=8)
        assert len(grid.info["panel_boxes"]) == 6 and "page 2 of 2" in notes[0]
        grid, notes = feature_grid(f, channels="0:16", min_tile=8)
        assert len(grid.info["panel_boxes"]) == 16 and notes == []
        with pytest.raises(ValueError):
            feature_grid(f, page=5)
        with pytest.raises(ValueError):
            feature_grid(f, channels="99")

    def test_batch_and_channels_make_named_tiles(self):
        f = np.zeros((2, 3, 4, 4))
        grid = reopen(feature_grid(f, "NCHW", channels=[0, 2], min_tile=4)[0])
        assert len(grid.info["panel_boxes"]) == 4
        assert all(has_text(grid, b) for b in grid.info["label_boxes"])

    @pytest.mark.parametrize("shape, layout, axis", [((0, 4, 4), None, "C"),
                                                     ((0, 3, 4, 4), None, "N"),
                                                     ((3, 0, 4), None, "H"),
                                                     ((4, 0), None, "W"),
                                                     ((4, 4, 0), "HWC", "C")])
    def test_an_axis_of_length_zero_is_named_not_taken_for_a_selection(self, shape, layout,
                                                                        axis):
        with pytest.raises(ValueError, match=rf"^nothing to draw: axis {axis} has length 0 "
                                             rf"\(shape \({shape[0]}, "):
            feature_grid(np.zeros(shape, np.float32), layout)
        with pytest.raises(ValueError, match=f"axis {axis} has length 0"):
            feature_grid(np.zeros(shape, np.float32), layout, channels="0" if "C" in (
                layout or "C") else None)

    def test_before_after(self):
        f = self.ramps(channels=2, h=4, w=8)
        spec = make_spec("max", window=2)
        pooled = spec.apply(f)
        grid, _ = feature_grid(f, "CHW", before_after=(pooled, spec.plan(f.shape)),
                               cmap="gray", min_tile=8)
        grid = reopen(grid)
        box = grid.info["panel_boxes"][0]
        tile = pixels(grid, box)
        assert tile.shape[:2] == (4, 8 + 4 + 8)  # input | 4 px gap | pooled
        after = tile[:, 12:, 0].astype(int)
        expected = np.round(upscale_nearest(pooled, f.shape, spec.plan(f.shape))[0] * 255)
        assert np.abs(after - expected).max() <= 1
        assert np.all(tile[:, 8:12] == BACKGROUND)
        assert has_text(grid, grid.info["label_boxes"][0])

    def test_large_tiles_are_reduced_and_said_so(self):
        f = np.zeros((1, 40, 800))
        grid, notes = feature_grid(f, max_tile=200)
        box = grid.info["panel_boxes"][0]
        assert box[2] - box[0] == 200 and any("1/4 scale" in n for n in notes)

    def test_colour_bar(self):
        bar = reopen(colorbar("viridis", "low", "high", width=200))
        ramp = pixels(bar, (1, 1, 201, 2))[0]
        lut = get_colormap("viridis")
        assert ramp[0].tolist() == lut[0].tolist() and ramp[-1].tolist() == lut[255].tolist()
        assert has_text(bar, (0, 16, bar.width, bar.height))
        grid = feature_grid(self.ramps(), min_tile=16)[0]
        below = pixels(grid, (0, grid.info["panel_boxes"][0][3] + 4, grid.width, grid.height))
        assert (np.all(below == lut[0], axis=-1)).any()  # the bar is drawn under the tiles

    def test_select_channels_and_labels(self):
        assert select_channels(None, 3) == [0, 1, 2]
        assert select_channels(-1, 3) == [2]
        assert select_channels("1:", 4) == [1, 2, 3]
        with pytest.raises(ValueError):
            select_channels("a:b", 4)
        assert format_value(0.4) == "0.40" and format_value(-0.123) == "-0.12"
        assert format_value(255.0) == "255" and format_value(float("nan")) == "nan"
        plan = make_spec("max", window=(3, 2), stride=1, padding=((1, 1), (0, 1)),
                         dilation=2).plan((20, 20))
        assert describe_geometry(plan) == "window 3x2  stride 1x1  pad 1:1,0:1  dilation 2x2"
        assert describe_geometry(make_spec("max", global_pool=True).plan((3, 5))) == \
            "global (3x5)"


# ----------------------------------------------------------------------------- plot

class TestScatterPlot:
    POINTS = [("2x2 s2", 1.2, 31.2, "max"), ("3x3 s3", 0.9, 28.1, "max"),
              ("2x2 s2", 1.8, 33.5, "avg"), ("2x2 s1", 4.1, math.inf, "avg"),
              ("2x2 s2", 1.3, 30.9, "min"), ("bad", math.nan, 20.0, "min")]

    def test_markers_axes_legend(self):
        im = reopen(scatter_plot(self.POINTS, title="t"))
        assert im.size == (960, 600)
        left, top, right, bottom = im.info["plot_box"]
        markers = im.info["markers"]
        assert len(markers) == 5  # the NaN point is left out
        by_label = {(m[0], i): m for i, m in enumerate(markers)}
        colours = {}
        for (label, _), (_, x, y) in by_label.items():
            assert left <= x <= right and top <= y <= bottom
            colours.setdefault(label, set()).add(im.getpixel((x, y)))
        # each marker is filled with a non-background colour
        for _, x, y in markers:
            assert im.getpixel((x, y)) not in (BACKGROUND, (255, 255, 255))
        # higher PSNR is higher up; the infinite one is above every finite one
        ys = {p[2]: m[2] for p, m in zip([p for p in self.POINTS if not math.isnan(p[1])],
                                         markers)}
        assert ys[33.5] < ys[31.2] < ys[28.1]
        assert ys[math.inf] < min(ys[v] for v in ys if math.isfinite(v))
        # axis titles, tick numbers, legend and the note about 'inf' are drawn
        assert has_text(im, (0, top, left - 30, bottom))              # y title (rotated)
        assert has_text(im, (left, bottom + 2, right, im.height))      # x ticks and title
        assert has_text(im, (right + 5, top, im.width, bottom))        # legend
        assert has_text(im, (0, 0, im.width, top))                     # title

    def test_same_group_same_colour(self):
        pts = [("a", 1.0, 10.0, "max"), ("b", 2.0, 20.0, "max"), ("c", 3.0, 15.0, "avg")]
        im = reopen(scatter_plot(pts))
        (_, x0, y0), (_, x1, y1), (_, x2, y2) = im.info["markers"]
        assert im.getpixel((x0, y0)) == im.getpixel((x1, y1)) != im.getpixel((x2, y2))

    def test_degenerate_inputs(self):
        for pts in ([], [("only", 1.0, math.inf, "avg")], [("one", 5.0, 20.0, "max")]):
            im = reopen(scatter_plot(pts))
            assert im.size == (960, 600)

    def test_log_axis_when_times_span_decades(self):
        pts = [("a", 0.01, 10.0, "max"), ("b", 10.0, 20.0, "max")]
        im = scatter_plot(pts, size=(640, 400))
        (_, xa, _), (_, xb, _) = im.info["markers"]
        left, _, right, _ = im.info["plot_box"]
        assert xa > left and xb < right
        assert nice_ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]


# ----------------------------------------------------------------------------- analyze

class TestAnalyze:
    MODES = ["max", "avg", "min", "lp", "sum"]

    def test_constant_image_is_lossless_for_every_mode(self):
        x = np.full((24, 24, 3), 77, np.uint8)
        rows = analyze(x, "HWC", self.MODES, windows=[2, 3, 4], repeat=1)
        assert len(rows) == 15 and rows.skipped == []
        for row in rows:
            assert row["psnr_db"] == math.inf, row
            assert row["ssim"] == 1.0 and row["energy_kept"] == 1.0

    def test_block_constant_image_is_reconstructed_by_window_two(self):
        rng = np.random.default_rng(12)
        blocks = rng.integers(0, 256, (8, 10), dtype=np.uint8)
        x = np.repeat(np.repeat(blocks, 2, axis=0), 2, axis=1)
        rows = analyze(x, None, ["max", "min", "avg"], windows=[2], repeat=1)
        for row in rows:
            assert row["psnr_db"] == math.inf and row["ssim"] == 1.0
            assert row["energy_kept"] == 1.0 and row["reduction"] == 4.0
        lossy = analyze(x, None, ["max"], windows=[4], repeat=1)[0]
        assert lossy["psnr_db"] < 100 and lossy["ssim"] < 1

    def test_psnr_by_hand(self):
        x = np.array([[0.0, 4.0], [8.0, 12.0]])
        row = analyze(x, "HW", ["avg"], windows=[2], repeat=1)[0]
        # every cell becomes 6; MSE (36 + 4 + 4 + 36) / 4 = 20; L = max - min = 12
        assert row["psnr_db"] == pytest.approx(10 * math.log10(144 / 20), abs=1e-12)
        assert row["energy_kept"] == 0.0 and row["output_shape"] == [1, 1]

    def test_row_fields_and_timing(self):
        x = np.random.default_rng(13).random((3, 20, 20)).astype(np.float32)
        rows = analyze(x, "CHW", ["max", "lp"], windows=[2, "3x2"], strides=[None, 1],
                       repeat=3)
        assert [r["label"] for r in rows[:4]] == ["2x2 s2", "2x2 s1", "3x2 s3x2", "3x2 s1"]
        for row in rows:
            assert row["time_ms_min"] <= row["time_ms_median"] <= row["time_ms_max"]
            assert row["mb_per_s"] > 0
            assert row["reduction"] == pytest.approx(x.size / np.prod(row["output_shape"]))
            assert 0 <= row["energy_kept"] <= 1 and -1 <= row["ssim"] <= 1
        assert rows[0]["compared_as"] == "output"
        assert rows[4]["compared_as"].startswith("lp / n^(1/p)")
        assert rows.data_range == pytest.approx(float(x.max() - x.min()))
        assert "nearest" in rows.upscaling

    def test_match_scale(self):
        x = np.random.default_rng(14).integers(0, 256, (16, 16), dtype=np.uint8)
        matched = analyze(x, None, ["sum", "avg"], windows=[2], repeat=1)
        assert matched[0]["psnr_db"] == pytest.approx(matched[1]["psnr_db"])
        raw = analyze(x, None, ["sum"], windows=[2], repeat=1, match_scale=False)
        assert raw[0]["psnr_db"] < 0 and raw.notes

    def test_skips_what_does_not_fit_and_refuses_usage_errors(self):
        x = np.zeros((6, 6), np.uint8)
        rows = analyze(x, None, ["max"], windows=[2, 8], repeat=1)
        assert len(rows) == 1 and len(rows.skipped) == 1 and "8" in rows.skipped[0]
        with pytest.raises(PoolError):
            analyze(x, None, ["median"], windows=[2])
        with pytest.raises(PoolError):
            analyze(x, None, ["max"], windows=[0])

    def test_values_whose_squares_overflow_are_measured(self):
        x = np.array([[0.0, 1e200], [1e200, 0.0]])  # L = 1e200: L**2 overflows float64
        rows = analyze(x, None, ["max", "avg"], windows=[2], repeat=1)
        # max makes every cell 1e200: MSE L**2 / 2; avg every cell 5e199: MSE L**2 / 4
        assert rows[0]["psnr_db"] == pytest.approx(10 * math.log10(2), abs=1e-12)
        assert rows[1]["psnr_db"] == pytest.approx(10 * math.log10(4), abs=1e-12)
        for row in rows:
            assert row["energy_kept"] == 0.0 and 0 < row["ssim"] < 1
        assert rows.data_range == 1e200

    @pytest.mark.parametrize("shape, axis", [((0, 4, 4), "C"), ((2, 0, 3, 4, 4), "C"),
                                             ((3, 4, 0), "W")])
    def test_an_array_without_values_is_refused(self, shape, axis):
        with pytest.raises(PoolError, match=rf"^no values to analyze: axis {axis} has length 0"):
            analyze(np.zeros(shape, np.float32), None, ["max"], windows=[2], repeat=1)
        with pytest.raises(PoolError, match="unknown"):  # usage errors still come first
            analyze(np.zeros(shape, np.float32), None, ["median"], windows=[2], repeat=1)

    def test_timing_wraps_only_the_pooling(self, monkeypatch):
        from pool_cli.core.pooling import PoolSpec

        calls = []
        real = PoolSpec.run

        def counting(self, *args, **kwargs):
            calls.append(1)
            return real(self, *args, **kwargs)

        monkeypatch.setattr(PoolSpec, "run", counting)
        analyze(np.zeros((8, 8)), None, ["max", "avg"], windows=[2], repeat=4)
        assert len(calls) == 8

    def test_plot_from_rows(self):
        x = np.random.default_rng(15).integers(0, 256, (32, 32), dtype=np.uint8)
        rows = analyze(x, None, ["max", "avg"], windows=[2, 4], repeat=1)
        points = points_from_rows(rows)
        assert points[0] == (rows[0]["label"], rows[0]["time_ms_median"], rows[0]["psnr_db"],
                             "max")
        im = reopen(scatter_plot(points))
        assert len(im.info["markers"]) == 4
        assert geometry_label([2, 2], [2, 2]) == "2x2 s2"


def test_samples_render_quickly_and_look_right():
    """One real photo through the whole chain (kept small: a crop)."""
    import os
    path = os.path.join(os.path.dirname(__file__), "..", "samples", "coffee.png")
    if not os.path.exists(path):
        pytest.skip("samples not present")
    x = np.asarray(Image.open(path))[100:228, 200:328]
    result = compare_sheet(x, ["max", "avg", "min", "lp"], "HWC", window=4)
    sheet = reopen(result.image)
    boxes = sheet.info["panel_boxes"]
    assert len(boxes) == 5
    mx, avg, mn = (pixels(sheet, b).astype(int).sum() for b in boxes[1:4])
    assert mx > avg > mn  # max brightens, min darkens


def test_values_whose_span_overflows_float64_still_display():
    from pool_cli.visual import image_to_rgb

    shown = image_to_rgb(np.array([[1e308, -1e308, 0.0]]))[0, :, 0].tolist()
    assert shown == [255, 0, 128]
