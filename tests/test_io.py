"""Tests for pool_cli.io: reading inputs, writing outputs, and their errors."""

from __future__ import annotations

import io
import os
import pickle
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms

from pool_cli import io as pio
from pool_cli.core.errors import PoolError
from pool_cli.io import (
    FORMATS,
    Loaded,
    extension_for_format,
    format_for_path,
    read_input,
    write_output,
)

RNG = np.random.default_rng(1234)

# ---------------------------------------------------------------------------
# Helpers


def sample(mode: str, h: int = 6, w: int = 8) -> np.ndarray:
    """A random array of the dtype and shape a Pillow mode is handed out as."""
    channels = {"LA": 2, "RGB": 3, "RGBA": 4, "CMYK": 4}.get(mode)
    shape = (h, w) if channels is None else (h, w, channels)
    if mode == "1":
        return RNG.random(shape) < 0.5
    if mode == "I;16":
        return RNG.integers(0, 65536, shape, dtype=np.uint16)
    if mode == "I":
        return RNG.integers(-(2**31), 2**31, shape, dtype=np.int32)
    if mode == "F":
        return RNG.standard_normal(shape).astype(np.float32) * 1e6
    return RNG.integers(0, 256, shape, dtype=np.uint8)


def to_image(arr: np.ndarray, mode: str) -> Image.Image:
    if mode == "CMYK":
        return Image.frombytes("CMYK", (arr.shape[1], arr.shape[0]), arr.tobytes())
    im = Image.fromarray(arr)
    assert im.mode == mode
    return im


def png16(arr: np.ndarray, colour_type: int) -> bytes:
    """Encode a 16-bit PNG by hand (Pillow cannot write 16-bit colour PNGs)."""
    h, w = arr.shape[:2]
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def tiff16_rgb(arr: np.ndarray) -> bytes:
    """Encode an uncompressed 16-bit RGB TIFF by hand (Pillow cannot write one)."""
    h, w, _ = arr.shape
    data = arr.astype("<u2").tobytes()
    short, long_ = 3, 4
    entries = [
        (256, short, 1, w),  # ImageWidth
        (257, short, 1, h),  # ImageLength
        (258, short, 3, None),  # BitsPerSample, stored after the IFD
        (259, short, 1, 1),  # no compression
        (262, short, 1, 2),  # RGB
        (273, long_, 1, None),  # StripOffsets
        (277, short, 1, 3),  # SamplesPerPixel
        (278, short, 1, h),  # RowsPerStrip
        (279, long_, 1, len(data)),  # StripByteCounts
    ]
    bits_at = 8 + 2 + 12 * len(entries) + 4
    data_at = bits_at + 8
    out = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        value = {258: bits_at, 273: data_at}.get(tag, value)
        inline_short = kind == short and tag != 258
        packed = struct.pack("<HH", value, 0) if inline_short else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, kind, count) + packed
    return out + struct.pack("<I", 0) + struct.pack("<4H", 16, 16, 16, 0) + data


def array_like(source: str = "x.npy") -> Loaded:
    """The `like` for results of an array input."""
    return Loaded(source=source, format="npy", arrays={})


def image_like(mode: str, icc: bytes | None = None) -> Loaded:
    return Loaded("x.png", "png", {}, layout="HW", image_mode=mode, icc_profile=icc)


def block_mean(arr: np.ndarray) -> np.ndarray:
    """2x2 block average in float64, as the pooling core computes it."""
    h, w = arr.shape[:2]
    blocks = arr.astype(np.float64).reshape(h // 2, 2, w // 2, 2, *arr.shape[2:])
    return blocks.mean(axis=(1, 3))


def assert_one_line_naming(exc: pytest.ExceptionInfo, name: str) -> None:
    message = str(exc.value)
    assert message.startswith(f"{name}: "), message
    assert "\n" not in message


def listing(path) -> list[str]:
    return sorted(os.listdir(path))


# ---------------------------------------------------------------------------
# Formats


def test_format_for_path_by_extension():
    assert format_for_path("a/b.PNG") == "png"
    assert format_for_path("x.jpg") == format_for_path("x.jpeg") == "jpeg"
    assert format_for_path("x.tif") == format_for_path("x.tiff") == "tiff"
    assert {format_for_path(f"x.{e}") for e in ("ppm", "pgm", "pbm", "pnm")} == {"ppm"}
    assert format_for_path("x.npz") == "npz"
    assert format_for_path("x.dat") is None
    assert format_for_path("noext") is None


def test_extension_for_every_format_maps_back():
    for fmt in FORMATS:
        ext = extension_for_format(fmt)
        assert ext.startswith(".")
        assert format_for_path("x" + ext) == fmt
    assert extension_for_format("jpeg") == ".jpg"
    with pytest.raises(PoolError):
        extension_for_format("exr")


# ---------------------------------------------------------------------------
# Round trips per mode

MODES_BY_FORMAT = {
    "png": ("1", "L", "LA", "RGB", "RGBA", "I;16"),
    "tiff": ("1", "L", "LA", "RGB", "RGBA", "CMYK", "I;16", "I", "F"),
    "bmp": ("1", "L", "RGB"),
    "ppm": ("1", "L", "RGB", "I;16"),
}
CASES = [(fmt, mode) for fmt, modes in MODES_BY_FORMAT.items() for mode in modes]


@pytest.mark.parametrize("fmt,mode", CASES, ids=[f"{f}-{m}" for f, m in CASES])
def test_read_and_write_back_keep_mode_and_values(tmp_path, fmt, mode):
    arr = sample(mode)
    src = tmp_path / f"in{extension_for_format(fmt)}"
    to_image(arr, mode).save(src)

    loaded = read_input(str(src))
    got = loaded.arrays[None]
    assert loaded.format == fmt
    assert loaded.image_mode == mode
    assert loaded.layout == ("HW" if arr.ndim == 2 else "HWC")
    assert got.dtype == arr.dtype and got.shape == arr.shape
    np.testing.assert_array_equal(got, arr)
    assert loaded.nbytes == src.stat().st_size
    assert loaded.warnings == []

    dest = tmp_path / f"out{extension_for_format(fmt)}"
    assert write_output(str(dest), {None: got}, fmt=fmt, like=loaded) == []
    back = read_input(str(dest))
    assert back.image_mode == mode
    np.testing.assert_array_equal(back.arrays[None], arr)


def test_jpeg_keeps_mode_for_l_rgb_cmyk(tmp_path):
    for mode in ("L", "RGB", "CMYK"):
        src = tmp_path / f"{mode}.jpg"
        to_image(sample(mode), mode).save(src, quality=90)
        loaded = read_input(str(src))
        assert loaded.image_mode == mode
        dest = tmp_path / f"{mode}_out.jpg"
        write_output(str(dest), loaded.arrays, fmt="jpeg", like=loaded)
        with Image.open(dest) as im:
            assert im.mode == mode


def test_webp_reads_rgb_and_rgba(tmp_path):
    for mode in ("RGB", "RGBA"):
        arr = sample(mode)
        src = tmp_path / f"{mode}.webp"
        to_image(arr, mode).save(src, lossless=True)
        loaded = read_input(str(src))
        assert loaded.format == "webp" and loaded.image_mode == mode
        np.testing.assert_array_equal(loaded.arrays[None], arr)


def test_palette_expands_to_rgb(tmp_path):
    rgb = sample("RGB")
    im = Image.fromarray(rgb).quantize(16)
    im.save(tmp_path / "p.png")
    loaded = read_input(str(tmp_path / "p.png"))
    assert loaded.image_mode == "RGB"
    np.testing.assert_array_equal(loaded.arrays[None], np.asarray(im.convert("RGB")))


def test_palette_with_transparency_expands_to_rgba(tmp_path):
    im = Image.fromarray(sample("RGB")).quantize(16)
    im.save(tmp_path / "pt.png", transparency=3)
    loaded = read_input(str(tmp_path / "pt.png"))
    arr = loaded.arrays[None]
    assert loaded.image_mode == "RGBA" and arr.shape[2] == 4
    np.testing.assert_array_equal(arr[..., 3] == 0, np.asarray(im) == 3)


@pytest.mark.parametrize("mode", ["YCbCr", "LAB"])
def test_other_modes_convert_to_rgb(tmp_path, mode):
    Image.new(mode, (5, 4)).save(tmp_path / "o.tif")
    loaded = read_input(str(tmp_path / "o.tif"))
    assert loaded.image_mode == "RGB"
    assert loaded.arrays[None].shape == (4, 5, 3) and loaded.arrays[None].dtype == np.uint8


def test_16bit_grey_stays_16bit_and_averages_round_back(tmp_path):
    arr = sample("I;16", 4, 4)
    Image.fromarray(arr).save(tmp_path / "g16.png")
    loaded = read_input(str(tmp_path / "g16.png"))
    assert loaded.arrays[None].dtype == np.uint16 and loaded.image_mode == "I;16"
    mean = block_mean(loaded.arrays[None])
    write_output(str(tmp_path / "avg.png"), {None: mean}, fmt="png", like=loaded)
    with Image.open(tmp_path / "avg.png") as im:
        assert im.mode == "I;16"
        np.testing.assert_array_equal(np.asarray(im), np.floor(mean + 0.5).astype(np.uint16))


def test_16bit_grey_from_hand_made_png_has_no_warning(tmp_path):
    arr = sample("I;16", 3, 5)
    (tmp_path / "g.png").write_bytes(png16(arr, 0))
    loaded = read_input(str(tmp_path / "g.png"))
    assert loaded.warnings == []
    np.testing.assert_array_equal(loaded.arrays[None], arr)


@pytest.mark.parametrize("colour_type,channels", [(2, 3), (6, 4)])
def test_16bit_colour_png_warns_about_lost_precision(tmp_path, colour_type, channels):
    arr = RNG.integers(0, 65536, (3, 5, channels), dtype=np.uint16)
    (tmp_path / "deep.png").write_bytes(png16(arr, colour_type))
    loaded = read_input(str(tmp_path / "deep.png"))
    assert loaded.arrays[None].dtype == np.uint8
    assert_precision_warning(loaded, str(tmp_path / "deep.png"))


def test_16bit_colour_tiff_and_ppm_warn_about_lost_precision(tmp_path):
    arr = RNG.integers(0, 65536, (3, 5, 3), dtype=np.uint16)
    (tmp_path / "deep.tif").write_bytes(tiff16_rgb(arr))
    header = b"P6\n# comment\n5 3\n65535\n"
    (tmp_path / "deep.ppm").write_bytes(header + arr.astype(">u2").tobytes())
    for name in ("deep.tif", "deep.ppm"):
        assert_precision_warning(read_input(str(tmp_path / name)), str(tmp_path / name))


def test_16bit_pgm_stays_16bit(tmp_path):
    arr = sample("I;16", 3, 5)
    (tmp_path / "g.pgm").write_bytes(b"P5\n5 3\n65535\n" + arr.astype(">u2").tobytes())
    loaded = read_input(str(tmp_path / "g.pgm"))
    assert loaded.image_mode == "I;16" and loaded.warnings == []
    np.testing.assert_array_equal(loaded.arrays[None], arr)


def assert_precision_warning(loaded: Loaded, name: str) -> None:
    assert loaded.arrays[None].dtype == np.uint8
    assert len(loaded.warnings) == 1
    assert loaded.warnings[0].startswith(f"{name}: ")
    assert "precision" in loaded.warnings[0] and ".npy" in loaded.warnings[0]


def test_mode_1_from_float_thresholds_at_half(tmp_path):
    result = np.array([[0.0, 0.25], [0.5, 1.0]])
    write_output(str(tmp_path / "b.png"), {None: result}, fmt="png", like=image_like("1"))
    with Image.open(tmp_path / "b.png") as im:
        assert im.mode == "1"
        np.testing.assert_array_equal(np.asarray(im), [[False, False], [True, True]])


# ---------------------------------------------------------------------------
# Image.reduce equality


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_2x2_average_written_back_equals_pillow_reduce(tmp_path, mode):
    src = tmp_path / "in.png"
    to_image(sample(mode, 32, 48), mode).save(src)
    loaded = read_input(str(src))
    mean = block_mean(loaded.arrays[None])

    dest = tmp_path / "avg.png"
    write_output(str(dest), {None: mean}, fmt="png", like=loaded)

    back = read_input(str(dest))
    with Image.open(src) as im:
        expected = np.asarray(im.reduce(2))
    assert back.image_mode == mode
    np.testing.assert_array_equal(back.arrays[None], expected)


def test_ties_round_up_and_out_of_range_values_are_clipped_with_a_warning(tmp_path):
    result = np.array([[0.5, 1.5, 2.49], [-3.0, 254.5, 300.0]])
    dest = tmp_path / "c.png"
    notes = write_output(str(dest), {None: result}, fmt="png", like=image_like("L"))
    with Image.open(dest) as im:
        np.testing.assert_array_equal(np.asarray(im), [[1, 2, 2], [0, 255, 255]])
    assert len(notes) == 1 and "2 values" in notes[0] and "clipped" in notes[0]


# ---------------------------------------------------------------------------
# EXIF, ICC, frames


def test_exif_orientation_is_applied(tmp_path):
    im = Image.fromarray(sample("RGB", 20, 40))  # 40 wide, 20 high
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to view
    im.save(tmp_path / "rot.jpg", exif=exif)
    loaded = read_input(str(tmp_path / "rot.jpg"))
    assert loaded.arrays[None].shape == (40, 20, 3)


def test_icc_profile_is_kept_and_written_back(tmp_path):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    to_image(sample("RGB"), "RGB").save(tmp_path / "icc.png", icc_profile=icc)
    loaded = read_input(str(tmp_path / "icc.png"))
    assert loaded.icc_profile == icc
    for fmt in ("png", "jpeg", "tiff"):
        dest = tmp_path / f"out{extension_for_format(fmt)}"
        assert write_output(str(dest), loaded.arrays, fmt=fmt, like=loaded) == []
        assert read_input(str(dest)).icc_profile == icc


def test_icc_profile_dropped_by_bmp_is_reported(tmp_path):
    notes = write_output(
        str(tmp_path / "o.bmp"), {None: sample("L")}, fmt="bmp", like=image_like("L", b"fake icc")
    )
    assert len(notes) == 1 and "ICC" in notes[0]


def test_animated_gif_reads_first_frame_with_a_warning(tmp_path):
    frames = [Image.new("RGB", (4, 3), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    loaded = read_input(str(tmp_path / "anim.gif"))
    assert loaded.arrays[None][0, 0].tolist() == [255, 0, 0]
    assert len(loaded.warnings) == 1 and "2 frames" in loaded.warnings[0]


def test_gif_round_trip_with_an_exact_palette(tmp_path):
    arr = RNG.choice([0, 128, 255], size=(6, 8, 3)).astype(np.uint8)
    write_output(str(tmp_path / "o.gif"), {None: arr}, fmt="gif", like=array_like())
    np.testing.assert_array_equal(read_input(str(tmp_path / "o.gif")).arrays[None], arr)


def test_gif_refuses_more_than_256_colours(tmp_path):
    arr = RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    with pytest.raises(PoolError, match="256 colours") as exc:
        write_output(str(tmp_path / "o.gif"), {None: arr}, fmt="gif", like=image_like("RGB"))
    assert_one_line_naming(exc, str(tmp_path / "o.gif"))
    assert listing(tmp_path) == []


# ---------------------------------------------------------------------------
# Sniffing and standard input


def test_png_named_dat_is_sniffed(tmp_path):
    arr = sample("L")
    Image.fromarray(arr).save(tmp_path / "image.dat", format="PNG")
    loaded = read_input(str(tmp_path / "image.dat"))
    assert loaded.format == "png"
    np.testing.assert_array_equal(loaded.arrays[None], arr)


def test_magic_bytes_win_over_the_extension(tmp_path):
    Image.fromarray(sample("RGB")).save(tmp_path / "really_a_jpeg.png", format="JPEG")
    assert read_input(str(tmp_path / "really_a_jpeg.png")).format == "jpeg"


def test_stdin_png():
    arr = sample("RGB")
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    loaded = read_input("-", stdin=io.BytesIO(buf.getvalue()))
    assert loaded.source == "-" and loaded.format == "png"
    assert loaded.nbytes == len(buf.getvalue())
    np.testing.assert_array_equal(loaded.arrays[None], arr)


def test_stdin_npy():
    arr = RNG.standard_normal((3, 4))
    buf = io.BytesIO()
    np.save(buf, arr)
    loaded = read_input("-", stdin=io.BytesIO(buf.getvalue()))
    assert loaded.format == "npy" and loaded.image_mode is None and loaded.layout is None
    np.testing.assert_array_equal(loaded.arrays[None], arr)


@pytest.mark.parametrize(
    "fmt,writer",
    [
        ("tiff", lambda f: Image.new("L", (3, 2)).save(f, format="TIFF")),
        ("bmp", lambda f: Image.new("L", (3, 2)).save(f, format="BMP")),
        ("gif", lambda f: Image.new("L", (3, 2)).save(f, format="GIF")),
        ("webp", lambda f: Image.new("RGB", (3, 2)).save(f, format="WEBP")),
        ("ppm", lambda f: Image.new("L", (3, 2)).save(f, format="PPM")),
        ("npz", lambda f: np.savez(f, a=np.zeros(3))),
    ],
)
def test_every_format_is_sniffed_from_stdin(fmt, writer):
    buf = io.BytesIO()
    writer(buf)
    assert read_input("-", stdin=io.BytesIO(buf.getvalue())).format == fmt


# ---------------------------------------------------------------------------
# .npy and .npz


def test_npy_full_precision_round_trip(tmp_path):
    arr = RNG.standard_normal((5, 7))
    write_output(str(tmp_path / "o.npy"), {None: arr}, fmt="npy", like=image_like("L"))
    got = read_input(str(tmp_path / "o.npy")).arrays[None]
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, arr)


def test_npy_is_memory_mapped_at_the_threshold(tmp_path):
    arr = np.arange(24, dtype=np.float32).reshape(4, 6)
    np.save(tmp_path / "a.npy", arr)
    mapped = read_input(str(tmp_path / "a.npy"), mmap_threshold=16).arrays[None]
    assert isinstance(mapped, np.memmap) and not mapped.flags.writeable
    np.testing.assert_array_equal(mapped, arr)
    assert not isinstance(read_input(str(tmp_path / "a.npy")).arrays[None], np.memmap)


def test_npz_keys_kept_in_order(tmp_path):
    arrays = {"zeta": np.zeros((2, 2)), "alpha": np.ones(3), "mid": np.arange(4)}
    np.savez(tmp_path / "a.npz", **arrays)
    loaded = read_input(str(tmp_path / "a.npz"))
    assert loaded.format == "npz"
    assert list(loaded.arrays) == ["zeta", "alpha", "mid"]
    for key, arr in arrays.items():
        np.testing.assert_array_equal(loaded.arrays[key], arr)


def test_npz_write_keeps_keys_even_ones_np_savez_cannot_take(tmp_path):
    arrays = {"file": np.arange(3), "allow_pickle": np.ones((2, 2)), "b": np.zeros(1, np.uint8)}
    write_output(str(tmp_path / "o.npz"), arrays, fmt="npz", like=array_like())
    loaded = read_input(str(tmp_path / "o.npz"))
    assert list(loaded.arrays) == list(arrays)
    for key, arr in arrays.items():
        assert loaded.arrays[key].dtype == arr.dtype
        np.testing.assert_array_equal(loaded.arrays[key], arr)


def test_complex_arrays_are_not_refused_here(tmp_path):
    np.save(tmp_path / "c.npy", np.ones(3, dtype=complex))
    assert read_input(str(tmp_path / "c.npy")).arrays[None].dtype == complex


# ---------------------------------------------------------------------------
# Read errors


def _bad_inputs(tmp_path):
    Image.new("RGB", (64, 64)).save(tmp_path / "full.png")
    full = (tmp_path / "full.png").read_bytes()
    (tmp_path / "bad.png").write_bytes(full[: len(full) // 2])
    (tmp_path / "x.dat").write_text("hello, not an image\n")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "folder.png").mkdir()
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    (tmp_path / "raw.npy").write_bytes(pickle.dumps([1, 2, 3]))
    np.savez(tmp_path / "obj.npz", ok=np.ones(2), bad=np.array([{}], dtype=object))
    (tmp_path / "trunc.npy").write_bytes(_npy_bytes(np.arange(100.0))[:100])


def _npy_bytes(arr):
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


READ_ERRORS = [
    ("missing.png", "no such file"),
    ("bad.png", "corrupt or truncated image"),
    ("x.dat", "unknown format (not an image, .npy or .npz)"),
    ("empty.png", "empty"),
    ("folder.png", "is a directory"),
    ("obj.npy", "object arrays are refused (pickled data is never loaded)"),
    ("raw.npy", "object arrays are refused"),
    ("obj.npz", "object arrays are refused"),
    ("trunc.npy", "corrupt or truncated .npy"),
]


@pytest.mark.parametrize("name,message", READ_ERRORS, ids=[n for n, _ in READ_ERRORS])
def test_read_errors_name_the_file_in_one_line(tmp_path, name, message):
    _bad_inputs(tmp_path)
    path = str(tmp_path / name)
    with pytest.raises(PoolError) as exc:
        read_input(path)
    assert_one_line_naming(exc, path)
    assert message in str(exc.value)


def test_empty_stdin():
    with pytest.raises(PoolError) as exc:
        read_input("-", stdin=io.BytesIO(b""))
    assert_one_line_naming(exc, "-")
    assert "empty" in str(exc.value)


def test_unknown_stdin():
    with pytest.raises(PoolError, match="unknown format") as exc:
        read_input("-", stdin=io.BytesIO(b"plain text"))
    assert_one_line_naming(exc, "-")


def test_permission_denied(tmp_path, monkeypatch):
    Image.new("L", (2, 2)).save(tmp_path / "locked.png")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    # Tests may run as root, where chmod 000 would not stop the read.
    monkeypatch.setattr(pio, "open", refuse, raising=False)
    with pytest.raises(PoolError, match="permission denied") as exc:
        read_input(str(tmp_path / "locked.png"))
    assert_one_line_naming(exc, str(tmp_path / "locked.png"))


@pytest.mark.parametrize("size", [20, 12])  # above 2x the limit (error) and above 1x (warning)
def test_decompression_bomb(tmp_path, monkeypatch, size):
    Image.new("L", (size, size)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(PoolError, match="decompression-bomb limit") as exc:
        read_input(str(tmp_path / "big.png"))
    assert_one_line_naming(exc, str(tmp_path / "big.png"))
    assert f"{size * size} pixels" in str(exc.value)


# ---------------------------------------------------------------------------
# Write errors and atomicity


def test_output_exists_without_overwrite(tmp_path):
    dest = tmp_path / "out.png"
    dest.write_bytes(b"keep me")
    with pytest.raises(PoolError) as exc:
        write_output(str(dest), {None: sample("L")}, fmt="png", like=image_like("L"))
    assert str(exc.value) == f"{dest}: output exists (use --overwrite to replace it)"
    assert dest.read_bytes() == b"keep me"
    assert listing(tmp_path) == ["out.png"]


def test_overwrite_replaces(tmp_path):
    dest = tmp_path / "out.png"
    dest.write_bytes(b"old")
    arr = sample("L")
    write_output(str(dest), {None: arr}, fmt="png", like=image_like("L"), overwrite=True)
    np.testing.assert_array_equal(read_input(str(dest)).arrays[None], arr)
    assert listing(tmp_path) == ["out.png"]


def test_missing_parent_directories_are_created(tmp_path):
    dest = tmp_path / "a" / "b" / "out.npy"
    write_output(str(dest), {None: np.arange(3)}, fmt="npy", like=array_like())
    np.testing.assert_array_equal(np.load(dest), np.arange(3))


def test_float_into_png_is_refused(tmp_path):
    dest = str(tmp_path / "out.png")
    with pytest.raises(PoolError) as exc:
        write_output(dest, {None: np.full((2, 2), 0.5)}, fmt="png", like=array_like())
    assert_one_line_naming(exc, dest)
    assert "PNG cannot hold float64" in str(exc.value) and ".npy" in str(exc.value)
    assert listing(tmp_path) == []


def test_float32_into_png_points_to_tiff(tmp_path):
    dest = str(tmp_path / "out.png")
    with pytest.raises(PoolError, match=r"\.tif or \.npy"):
        write_output(dest, {None: np.zeros((2, 2), np.float32)}, fmt="png", like=array_like())


def test_integer_sums_of_an_image_are_clipped_with_a_note(tmp_path):
    dest = str(tmp_path / "sum.png")
    notes = write_output(dest, {None: np.array([[-3, 7], [300, 255]], np.int64)}, fmt="png",
                         like=image_like("L"))
    assert np.array_equal(np.asarray(Image.open(dest)), [[0, 7], [255, 255]])
    assert notes == [f"{dest}: 2 values outside 0..255 clipped"]


@pytest.mark.parametrize(
    "fmt,mode,arr,fragment",
    [
        ("jpeg", "I;16", np.zeros((2, 2), np.uint16), "16-bit"),
        ("jpeg", "RGBA", np.zeros((2, 2, 4), np.uint8), "RGBA"),
        ("png", "F", np.zeros((2, 2), np.float32), "32-bit float"),
        ("png", "CMYK", np.zeros((2, 2, 4), np.uint8), "CMYK"),
        ("bmp", "RGBA", np.zeros((2, 2, 4), np.uint8), "alpha"),
    ],
)
def test_formats_that_cannot_hold_the_data_refuse(tmp_path, fmt, mode, arr, fragment):
    dest = str(tmp_path / f"out{extension_for_format(fmt)}")
    with pytest.raises(PoolError) as exc:
        write_output(dest, {None: arr}, fmt=fmt, like=image_like(mode))
    assert_one_line_naming(exc, dest)
    assert fragment in str(exc.value) and ".npy" in str(exc.value)
    assert listing(tmp_path) == []


def test_several_arrays_into_an_image_are_refused(tmp_path):
    dest = str(tmp_path / "out.png")
    with pytest.raises(PoolError, match=r"\.npz") as exc:
        write_output(dest, {"a": sample("L"), "b": sample("L")}, fmt="png", like=array_like())
    assert_one_line_naming(exc, dest)


@pytest.mark.parametrize(
    "arr,fmt,mode",
    [
        (sample("1"), "png", "1"),
        (sample("L"), "png", "L"),
        (sample("LA"), "png", "LA"),
        (sample("RGB"), "png", "RGB"),
        (sample("RGBA"), "png", "RGBA"),
        (sample("I;16"), "png", "I;16"),
        (sample("I"), "tiff", "I"),
        (sample("F"), "tiff", "F"),
    ],
)
def test_arrays_map_to_modes(tmp_path, arr, fmt, mode):
    dest = tmp_path / f"out{extension_for_format(fmt)}"
    write_output(str(dest), {None: arr}, fmt=fmt, like=array_like())
    with Image.open(dest) as im:
        assert im.mode == mode
    np.testing.assert_array_equal(read_input(str(dest)).arrays[None], arr)


def test_read_only_directory(tmp_path, monkeypatch):
    real_open = os.open

    def refuse(path, *args, **kwargs):
        if str(path).startswith(str(tmp_path)):
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, *args, **kwargs)

    # Simulated: tests may run as root, which ignores directory permissions.
    monkeypatch.setattr(os, "open", refuse)
    dest = str(tmp_path / "out.png")
    with pytest.raises(PoolError, match="permission denied") as exc:
        write_output(dest, {None: sample("L")}, fmt="png", like=image_like("L"))
    assert_one_line_naming(exc, dest)
    assert listing(tmp_path) == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a non-root POSIX user")
def test_read_only_directory_for_real(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(PoolError, match="permission denied"):
            write_output(str(locked / "o.npy"), {None: np.zeros(2)}, fmt="npy", like=array_like())
    finally:
        locked.chmod(0o700)


def test_failure_while_encoding_leaves_nothing_behind(tmp_path, monkeypatch):
    def half_write(self, fp, *args, **kwargs):
        fp.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", half_write)
    dest = str(tmp_path / "out.png")
    with pytest.raises(PoolError, match="No space left") as exc:
        write_output(dest, {None: sample("L")}, fmt="png", like=image_like("L"))
    assert_one_line_naming(exc, dest)
    assert listing(tmp_path) == []


def test_failure_keeps_an_existing_output_when_overwriting(tmp_path, monkeypatch):
    dest = tmp_path / "out.npy"
    dest.write_bytes(b"old")

    def broken_save(*args, **kwargs):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(np, "save", broken_save)
    with pytest.raises(PoolError):
        write_output(str(dest), {None: np.zeros(2)}, fmt="npy", like=array_like(), overwrite=True)
    assert dest.read_bytes() == b"old"
    assert listing(tmp_path) == ["out.npy"]


def test_stdout(tmp_path):
    arr = sample("RGB")
    out = io.BytesIO()
    write_output("-", {None: arr}, fmt="png", like=image_like("RGB"), stdout=out)
    with Image.open(io.BytesIO(out.getvalue())) as im:
        np.testing.assert_array_equal(np.asarray(im), arr)


def test_written_file_permissions_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_output(str(tmp_path / "o.npy"), {None: np.zeros(2)}, fmt="npy", like=array_like())
    finally:
        os.umask(old)
    assert (tmp_path / "o.npy").stat().st_mode & 0o777 == 0o644


def test_unknown_output_format(tmp_path):
    with pytest.raises(PoolError, match="unknown output format"):
        write_output(str(tmp_path / "o.exr"), {None: np.zeros(2)}, fmt="exr", like=array_like())


@pytest.mark.parametrize("dtype,stored", [(np.int16, np.int32), (np.int8, np.int32),
                                          (np.float16, np.float32), (np.uint16, np.uint16),
                                          (np.uint8, np.uint8), (bool, bool)])
def test_stored_dtype_of_an_array_written_as_an_image_is_the_dtype_written(tmp_path, dtype, stored):
    array = np.zeros((4, 5), dtype)
    like = array_like()
    assert pio.stored_dtype("tiff", like, array) == stored
    dest = str(tmp_path / "x.tiff")
    pio.write_output(dest, {"": array}, fmt="tiff", like=like)
    assert next(iter(pio.read_input(dest).arrays.values())).dtype == stored
    assert pio.stored_dtype("npy", like, array) == array.dtype
    assert pio.stored_dtype("png", like, np.zeros((4, 5), np.float64)) == np.float64  # refused later
