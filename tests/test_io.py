"""Tests for pool_cli.io: reading inputs, writing outputs, and their errors."""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms

from clitools import error_lines, run
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


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
         (0, 1, 1, 2)]  # (x0, y0, dx, dy) of the seven passes


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png16(arr: np.ndarray, colour_type: int, *, interlace: bool = False,
          filters: tuple[int, ...] = (0,), extra: tuple[tuple[bytes, bytes], ...] = ()) -> bytes:
    """Encode a 16-bit PNG by hand (Pillow cannot write 16-bit colour PNGs): rows filtered
    with ``filters`` in turn (per pass when Adam7-interlaced), ``extra`` chunks before IDAT."""
    h, w = arr.shape[:2]
    arr = arr.reshape(h, w, -1)
    stream = b""
    for i, (x0, y0, dx, dy) in enumerate(
            [p for p in (ADAM7 if interlace else [(0, 0, 1, 1)])
             if len(range(p[0], w, p[2])) and len(range(p[1], h, p[3]))]):
        sub = arr[y0::dy, x0::dx]
        raw = sub.astype(">u2").view(np.uint8).reshape(sub.shape[0], -1)
        stream += filter_rows(raw, 2 * arr.shape[2], filters[i % len(filters)])
    ihdr = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, int(interlace))
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + b"".join(png_chunk(kind, data) for kind, data in extra)
            + png_chunk(b"IDAT", zlib.compress(stream)) + png_chunk(b"IEND", b""))


def filter_rows(raw: np.ndarray, bpp: int, kind: int) -> bytes:
    """PNG-filter byte rows with one filter type (0 None .. 4 Paeth), each row led by it."""
    r = raw.astype(np.int16)
    b = np.vstack([np.zeros_like(r[:1]), r[:-1]])
    a = np.zeros_like(r)
    a[:, bpp:] = r[:, :-bpp]
    c = np.zeros_like(r)
    c[:, bpp:] = b[:, :-bpp]
    p = a + b - c
    paeth = np.where((abs(p - a) <= abs(p - b)) & (abs(p - a) <= abs(p - c)), a,
                     np.where(abs(p - b) <= abs(p - c), b, c))
    pred = [0, a, b, (a + b) // 2, paeth][kind]
    body = ((r - pred) % 256).astype(np.uint8)
    return np.hstack([np.full((len(r), 1), kind, np.uint8), body]).tobytes()


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """The chunks of a PNG, each CRC checked."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = [], 8
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        assert struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0] == zlib.crc32(kind + body)
        chunks.append((kind, body))
        pos += 12 + n
    return chunks


def decode_png16(data: bytes) -> tuple[np.ndarray, dict]:
    """Decode a non-interlaced 16-bit PNG by hand, byte by byte (no Pillow, no OpenCV):
    the uint16 (H, W, C) samples, and the IHDR fields and filter types seen."""
    chunks = png_chunks(data)
    assert chunks[0][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    w, h, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert depth == 16 and interlace == 0
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour_type]
    stream = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    bpp, row_bytes = 2 * channels, 2 * channels * w
    assert len(stream) == h * (row_bytes + 1)
    out, prior, kinds = bytearray(), bytearray(row_bytes), set()
    for y in range(h):
        kind, line = stream[y * (row_bytes + 1)], bytearray(stream[y * (row_bytes + 1) + 1:
                                                                   (y + 1) * (row_bytes + 1)])
        kinds.add(kind)
        for x in range(row_bytes):
            a = line[x - bpp] if x >= bpp else 0
            b, c = prior[x], (prior[x - bpp] if x >= bpp else 0)
            p = a + b - c
            paeth = a if abs(p - a) <= abs(p - b) and abs(p - a) <= abs(p - c) else (
                b if abs(p - b) <= abs(p - c) else c)
            line[x] = (line[x] + [0, a, b, (a + b) // 2, paeth][kind]) & 255
        out += line
        prior = line
    arr = np.frombuffer(bytes(out), ">u2").astype(np.uint16).reshape(h, w, channels)
    return arr, {"colour_type": colour_type, "filters": kinds,
                 "chunks": [kind for kind, _ in chunks]}


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


def block_max(arr: np.ndarray) -> np.ndarray:
    """2x2 block maximum (window 2, stride 2) of an HW or HWC array."""
    h, w = arr.shape[:2]
    return arr.reshape(h // 2, 2, w // 2, 2, *arr.shape[2:]).max(axis=(1, 3))


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
    assert format_for_path("a.TGA") == "tga" and format_for_path("a.pcx") == "pcx"
    assert {format_for_path(f"x.{e}") for e in ("sgi", "rgb", "rgba", "bw")} == {"sgi"}
    assert format_for_path("x.jp2") == format_for_path("x.j2k") == "jpeg2000"
    assert format_for_path("x.psd") is None  # read (Pillow knows it), never written


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


# ---------------------------------------------------------------------------
# 16-bit colour PNG: read (Pillow decodes twice), written by poolcli's own encoder

DEEP = [(2, 3, "RGB;16"), (6, 4, "RGBA;16"), (4, 2, "LA;16")]  # colour type, channels, mode


def smooth16(h: int, w: int, channels: int) -> np.ndarray:
    """uint16 gradients with noise: every PNG filter has something to win on them."""
    y, x = np.mgrid[0:h, 0:w]
    base = (x * 1201 + y * 523)[..., None] * np.arange(1, channels + 1)
    return ((base + RNG.integers(0, 700, (h, w, channels))) % 65536).astype(np.uint16)


@pytest.mark.parametrize("interlace", [False, True], ids=["plain", "adam7"])
@pytest.mark.parametrize("filters", [(0,), (1,), (2,), (3,), (4,), (4, 0, 3, 1, 2)])
@pytest.mark.parametrize("colour_type,channels,mode", DEEP, ids=[m for *_, m in DEEP])
def test_16bit_colour_png_is_read_with_all_16_bits(tmp_path, colour_type, channels, mode,
                                                    interlace, filters):
    for h, w in [(13, 17), (1, 1), (2, 9), (9, 1)]:  # uneven Adam7 passes, empty ones
        arr = RNG.integers(0, 65536, (h, w, channels), dtype=np.uint16)
        path = tmp_path / f"deep{h}x{w}.png"
        path.write_bytes(png16(arr, colour_type, interlace=interlace, filters=filters))
        loaded = read_input(str(path))
        got = loaded.arrays[None]
        assert loaded.image_mode == mode and loaded.layout == "HWC" and loaded.format == "png"
        assert got.dtype == np.uint16 and got.shape == arr.shape
        np.testing.assert_array_equal(got, arr)
        assert loaded.warnings == []


def test_16bit_colour_png_from_stdin_is_read_with_all_16_bits():
    arr = smooth16(11, 7, 3)
    loaded = read_input("-", stdin=io.BytesIO(png16(arr, 2, filters=(4,))))
    assert loaded.image_mode == "RGB;16"
    np.testing.assert_array_equal(loaded.arrays[None], arr)


@pytest.mark.parametrize("channels", [3, 4])
def test_16bit_colour_png_written_by_opencv_is_read_exactly(tmp_path, channels):
    cv2 = pytest.importorskip("cv2")
    for arr in (smooth16(37, 53, channels),
                RNG.integers(0, 65536, (19, 7, channels), dtype=np.uint16)):
        for flag in ("IMWRITE_PNG_FILTER_NONE", "IMWRITE_PNG_FILTER_PAETH", "IMWRITE_PNG_FILTER_SUB"):
            params = [cv2.IMWRITE_PNG_FILTER, getattr(cv2, flag)] if hasattr(cv2, flag) else []
            path = str(tmp_path / "cv.png")
            assert cv2.imwrite(path, arr[..., [2, 1, 0, 3][:channels]], params)  # OpenCV is BGR(A)
            loaded = read_input(path)
            assert loaded.image_mode == ("RGB;16" if channels == 3 else "RGBA;16")
            np.testing.assert_array_equal(loaded.arrays[None], arr)


def test_16bit_colour_png_keeps_exif_orientation_and_icc_profile(tmp_path):
    arr = smooth16(5, 7, 3)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise
    exif_data = exif.tobytes()
    exif_data = exif_data[6:] if exif_data.startswith(b"Exif\x00\x00") else exif_data
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    extra = ((b"iCCP", b"sRGB\x00\x00" + zlib.compress(icc)), (b"eXIf", exif_data))
    (tmp_path / "o.png").write_bytes(png16(arr, 2, filters=(1,), extra=extra))
    loaded = read_input(str(tmp_path / "o.png"))
    # The same orientation as Pillow applies to the 8-bit version of the image.
    eight = tmp_path / "o8.png"
    Image.fromarray((arr >> 8).astype(np.uint8)).save(eight, exif=exif)
    np.testing.assert_array_equal(loaded.arrays[None] >> 8, read_input(str(eight)).arrays[None])
    np.testing.assert_array_equal(loaded.arrays[None], np.rot90(arr, -1))
    assert loaded.icc_profile == icc

    dest = tmp_path / "back.png"
    assert write_output(str(dest), loaded.arrays, fmt="png", like=loaded) == []
    chunks = dict(png_chunks(dest.read_bytes()))
    name, rest = chunks[b"iCCP"].split(b"\x00", 1)
    assert name and rest[0] == 0 and zlib.decompress(rest[1:]) == icc
    with Image.open(dest) as im:
        assert im.info["icc_profile"] == icc


@pytest.mark.parametrize("level", [0, 1, 9])
@pytest.mark.parametrize("colour_type,channels,mode", DEEP, ids=[m for *_, m in DEEP])
def test_16bit_colour_is_written_as_a_16bit_png(tmp_path, monkeypatch, colour_type, channels,
                                                mode, level):
    # Small bands and IDAT chunks: several of each even for a small image.
    monkeypatch.setattr(pio, "_PNG_BAND_BYTES", 300)
    monkeypatch.setattr(pio, "_PNG_IDAT_BYTES", 200)
    arr = smooth16(23, 31, channels)
    arr[::5] = RNG.integers(0, 65536, arr[::5].shape, dtype=np.uint16)
    src = tmp_path / "in.png"
    src.write_bytes(png16(arr, colour_type))
    loaded = read_input(str(src))
    dest = tmp_path / "out.png"
    assert write_output(str(dest), loaded.arrays, fmt="png", like=loaded,
                        png_compression=level) == []
    data = dest.read_bytes()
    got, info = decode_png16(data)  # by hand, not through the reader under test
    np.testing.assert_array_equal(got, arr)
    assert info["colour_type"] == colour_type
    assert info["chunks"].count(b"IDAT") > 1
    assert info["filters"] == {0} if level == 0 else len(info["filters"]) > 1
    back = read_input(str(dest))
    assert back.image_mode == mode and back.warnings == []
    np.testing.assert_array_equal(back.arrays[None], arr)
    assert listing(tmp_path) == ["in.png", "out.png"]  # no temporary file left


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_16bit_colour_png_written_here_is_read_exactly_by_opencv(tmp_path, channels):
    cv2 = pytest.importorskip("cv2")
    arr = smooth16(29, 41, channels)
    dest = str(tmp_path / "out.png")
    write_output(dest, {None: arr}, fmt="png", like=array_like())
    back = cv2.imread(dest, cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16
    if channels == 2:  # OpenCV hands grey+alpha out as BGRA
        np.testing.assert_array_equal(back[..., [0, 3]], arr)
        np.testing.assert_array_equal(back[..., 1], arr[..., 0])
    else:
        np.testing.assert_array_equal(back[..., [2, 1, 0, 3][:channels]], arr)


def test_uint16_colour_array_goes_to_a_16bit_png_and_no_other_image_format(tmp_path):
    arr = RNG.integers(0, 65536, (6, 8, 3), dtype=np.uint16)
    np.save(tmp_path / "x.npy", arr)
    like = read_input(str(tmp_path / "x.npy"))
    assert pio.stored_dtype("png", like, arr) == np.uint16
    write_output(str(tmp_path / "x.png"), {None: arr}, fmt="png", like=like)
    np.testing.assert_array_equal(decode_png16((tmp_path / "x.png").read_bytes())[0], arr)
    for fmt in ("jpeg", "webp", "tiff", "bmp", "gif", "ppm", "tga"):
        dest = str(tmp_path / f"x{extension_for_format(fmt)}")
        with pytest.raises(PoolError) as exc:
            write_output(dest, {None: arr}, fmt=fmt, like=like)
        assert_one_line_naming(exc, dest)
        assert "16-bit RGB" in str(exc.value) and "use .png or .npy" in str(exc.value)
    assert listing(tmp_path) == ["x.npy", "x.png"]


def test_16bit_colour_results_round_ties_up_and_clip_with_a_note(tmp_path):
    like = Loaded("x.png", "png", {}, layout="HWC", image_mode="RGBA;16")
    means = np.array([[[0.5, 1.49, 65534.5, 65535.0]]])
    dest = str(tmp_path / "avg.png")
    assert write_output(dest, {None: means}, fmt="png", like=like) == []
    np.testing.assert_array_equal(decode_png16(open(dest, "rb").read())[0],
                                  [[[1, 1, 65535, 65535]]])
    sums = np.array([[[-1, 7, 70000, 65535]]], np.int64)
    dest = str(tmp_path / "sum.png")
    assert write_output(dest, {None: sums}, fmt="png", like=like) == [
        f"{dest}: 2 values outside 0..65535 clipped"]
    np.testing.assert_array_equal(decode_png16(open(dest, "rb").read())[0], [[[0, 7, 65535, 65535]]])


def test_16bit_colour_png_over_the_decompression_bomb_limit(tmp_path, monkeypatch):
    (tmp_path / "big.png").write_bytes(png16(np.zeros((20, 20, 3), np.uint16), 2))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(PoolError, match="decompression-bomb limit") as exc:
        read_input(str(tmp_path / "big.png"))
    assert_one_line_naming(exc, str(tmp_path / "big.png"))


def test_truncated_16bit_colour_png_is_one_line_error(tmp_path):
    data = png16(smooth16(40, 40, 3), 2)
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(PoolError, match="corrupt or truncated image") as exc:
        read_input(str(tmp_path / "cut.png"))
    assert_one_line_naming(exc, str(tmp_path / "cut.png"))


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


@pytest.mark.parametrize("mode, pil_format", [("RGB", "PNG"), ("RGBA", "TGA")])  # TGA: no magic
def test_stdin_image(mode, pil_format):
    arr = sample(mode)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=pil_format)
    loaded = read_input("-", stdin=io.BytesIO(buf.getvalue()))
    assert loaded.source == "-" and loaded.format == pil_format.lower()
    assert loaded.nbytes == len(buf.getvalue()) and loaded.image_mode == mode
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
# Formats poolcli knows through Pillow (no magic bytes in poolcli's own table)

# poolcli format: (Pillow format, the modes written and read back exactly).
PILLOW_FORMATS = {
    "tga": ("TGA", ("1", "L", "LA", "RGB", "RGBA")),
    "pcx": ("PCX", ("1", "L", "RGB")),
    "sgi": ("SGI", ("L", "RGB", "RGBA")),
    "qoi": ("QOI", ("RGB", "RGBA")),
    "dds": ("DDS", ("L", "LA", "RGB", "RGBA")),
    "xbm": ("XBM", ("1",)),
    "ico": ("ICO", ("1", "L", "LA", "RGB", "RGBA")),
    "dib": ("DIB", ("1", "L", "RGB")),
    "jpeg2000": ("JPEG2000", ("L", "LA", "RGB", "RGBA", "I;16")),
}
PILLOW_CASES = [(fmt, mode) for fmt, (_, modes) in PILLOW_FORMATS.items() for mode in modes]


def pillow_writes(pil_format: str) -> bool:
    Image.init()
    return pil_format in Image.SAVE


@pytest.mark.parametrize("fmt,mode", PILLOW_CASES, ids=[f"{f}-{m}" for f, m in PILLOW_CASES])
def test_formats_pillow_identifies_are_read_and_written_back(tmp_path, fmt, mode):
    pil_format = PILLOW_FORMATS[fmt][0]
    if not pillow_writes(pil_format):
        pytest.skip(f"this Pillow does not write {pil_format}")
    arr = sample(mode, 5, 7)
    src = tmp_path / f"in{extension_for_format(fmt)}"
    to_image(arr, mode).save(src, format=pil_format)
    (tmp_path / "no_extension").write_bytes(src.read_bytes())
    for path in (src, tmp_path / "no_extension"):  # Pillow names it, not the extension
        loaded = read_input(str(path))
        assert (loaded.format, loaded.image_mode, loaded.warnings) == (fmt, mode, [])
        np.testing.assert_array_equal(loaded.arrays[None], arr)

    dest = tmp_path / f"out{extension_for_format(fmt)}"
    assert write_output(str(dest), loaded.arrays, fmt=fmt, like=loaded) == []
    with Image.open(dest) as im:
        assert im.format == pil_format
    back = read_input(str(dest))
    assert back.format == fmt and back.image_mode == mode
    np.testing.assert_array_equal(back.arrays[None], arr)


def test_formats_poolcli_does_not_write_default_to_png_or_tiff_with_a_note(tmp_path):
    bits = sample("1")
    Image.fromarray(bits).save(tmp_path / "a.msp", format="MSP")  # Pillow reads, poolcli no
    floats = sample("F")
    Image.fromarray(floats).save(tmp_path / "b.spi", format="SPIDER")
    for name, fmt, pil_format, arr in [("a.msp", "png", "MSP", bits),
                                       ("b.spi", "tiff", "SPIDER", floats)]:
        loaded = read_input(str(tmp_path / name))
        assert loaded.format == fmt
        np.testing.assert_array_equal(loaded.arrays[None], arr)
        assert loaded.warnings == [] and loaded.fallback_notes("npy") == []
        [note] = loaded.fallback_notes(fmt)
        assert note.startswith(f"{tmp_path / name}: {pil_format} image") and fmt.upper() in note


def test_ico_larger_than_256_pixels_is_refused(tmp_path):
    dest = str(tmp_path / "big.ico")
    with pytest.raises(PoolError, match="ICO holds at most 256x256 pixels, not 300x10") as exc:
        write_output(dest, {None: sample("RGB", 10, 300)}, fmt="ico", like=image_like("RGB"))
    assert_one_line_naming(exc, dest)
    assert listing(tmp_path) == []


def test_icc_profile_dropped_by_tga_is_reported(tmp_path):
    dest = str(tmp_path / "o.tga")
    notes = write_output(dest, {None: sample("RGB")}, fmt="tga", like=image_like("RGB", b"icc"))
    assert notes == [f"{dest}: TGA cannot hold the ICC profile; it was dropped"]


def sgi16(arr: np.ndarray) -> bytes:
    """An uncompressed SGI image of 16 bits per sample (planar, bottom row first)."""
    h, w, z = arr.shape
    header = struct.pack(">hbbHHHHii", 474, 0, 2, 3, w, h, z, 0, 65535).ljust(512, b"\0")
    return header + np.ascontiguousarray(arr[::-1].transpose(2, 0, 1)).astype(">u2").tobytes()


def test_16bit_sgi_warns_about_lost_precision(tmp_path):
    arr = RNG.integers(0, 65536, (3, 5, 3), dtype=np.uint16)
    (tmp_path / "deep.sgi").write_bytes(sgi16(arr))
    loaded = read_input(str(tmp_path / "deep.sgi"))
    assert loaded.format == "sgi"
    np.testing.assert_array_equal(loaded.arrays[None], arr >> 8)  # Pillow keeps the high byte
    assert_precision_warning(loaded, str(tmp_path / "deep.sgi"))


def test_bad_files_of_formats_pillow_identifies_are_one_line_errors(tmp_path, monkeypatch):
    Image.fromarray(sample("RGB", 20, 20)).save(tmp_path / "ok.tga")
    data = (tmp_path / "ok.tga").read_bytes()
    (tmp_path / "cut.tga").write_bytes(data[: len(data) // 2])
    junk = b"just some text, no image of any kind\n" * 10
    for name in ("junk", "junk.bin", "junk.tga", "junk.pcx"):
        (tmp_path / name).write_bytes(junk)
    cases = [("junk", "unknown format (not an image, .npy or .npz)"),
             ("junk.bin", "unknown format (not an image, .npy or .npz)"),
             ("junk.tga", "not an image Pillow can read"),
             ("junk.pcx", "not an image Pillow can read"),
             ("cut.tga", "corrupt or truncated image")]
    for name, message in cases:
        with pytest.raises(PoolError) as exc:
            read_input(str(tmp_path / name))
        assert_one_line_naming(exc, str(tmp_path / name))
        assert message in str(exc.value)
    with pytest.raises(PoolError, match="unknown format"):
        read_input("-", stdin=io.BytesIO(junk))

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 400 pixels: over twice the limit
    for fmt in ("TGA", "PCX", "QOI"):
        path = tmp_path / f"big.{fmt.lower()}"
        Image.new("RGB", (20, 20)).save(path, format=fmt)
        with pytest.raises(PoolError, match=r"decompression-bomb limit \(400 pixels") as exc:
            read_input(str(path))
        assert_one_line_naming(exc, str(path))


# ---------------------------------------------------------------------------
# Through the command line


def test_cli_max_of_a_16bit_rgb_png_is_the_max_of_the_16bit_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    arr = smooth16(10, 14, 3)
    arr[1::2, 1::2] = RNG.integers(0, 65536, arr[1::2, 1::2].shape, dtype=np.uint16)
    (tmp_path / "in.png").write_bytes(png16(arr, 2, filters=(4, 1)))
    result = run("max", "in.png", "-w", "2", "-o", "out.png")
    assert "warning" not in result.stderr
    out = (tmp_path / "out.png").read_bytes()
    np.testing.assert_array_equal(decode_png16(out)[0], block_max(arr))
    back = read_input(str(tmp_path / "out.png"))
    assert back.image_mode == "RGB;16"
    np.testing.assert_array_equal(back.arrays[None], block_max(arr))

    run("avg", "in.png", "-w", "2", "-o", "avg.png", "-q")
    np.testing.assert_array_equal(decode_png16((tmp_path / "avg.png").read_bytes())[0],
                                  np.floor(block_mean(arr) + 0.5).astype(np.uint16))


def test_cli_pools_tga_pcx_qoi_sgi_into_their_own_formats(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    inputs = {"a.tga": ("TGA", "RGBA"), "b.pcx": ("PCX", "L"), "c.qoi": ("QOI", "RGB"),
              "d.sgi": ("SGI", "RGB")}
    arrays = {}
    for name, (pil_format, mode) in inputs.items():
        if not pillow_writes(pil_format):
            pytest.skip(f"this Pillow does not write {pil_format}")
        arrays[name] = sample(mode, 6, 8)
        to_image(arrays[name], mode).save(name, format=pil_format)
    run("max", *inputs, "-w", "2", "-q")
    for name, (pil_format, _) in inputs.items():
        stem, ext = os.path.splitext(name)
        with Image.open(f"{stem}_max{ext}") as im:
            assert im.format == pil_format
            np.testing.assert_array_equal(np.asarray(im), block_max(arrays[name]))
    run("min", "a.tga", "-w", "2", "--format", "tga", "-o", "out/", "-q")
    with Image.open("out/a_min.tga") as im:
        np.testing.assert_array_equal(
            np.asarray(im), arrays["a.tga"].reshape(3, 2, 4, 2, 4).min(axis=(1, 3)))


def test_cli_format_poolcli_does_not_write_goes_to_png_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bits = sample("1", 6, 8)
    Image.fromarray(bits).save("m.msp", format="MSP")
    result = run("max", "m.msp", "-w", "2")
    assert any("m.msp: MSP image" in line and "PNG" in line
               for line in result.stderr.splitlines() if "warning" in line)
    with Image.open("m_max.png") as im:
        np.testing.assert_array_equal(np.asarray(im), block_max(bits))
    for chosen in (["-o", "m.tif"], ["-o", "m.npy"], ["--format", "bmp"]):  # no fallback then
        result = run("max", "m.msp", "-w", "2", "--json", *chosen)
        assert "PNG" not in result.stderr
        assert "warnings" not in json.loads(result.stdout)


def test_info_names_the_format_read_not_the_fallback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Image.fromarray(sample("1", 6, 8)).save("m.msp", format="MSP")
    [row] = [json.loads(line) for line in run("info", "m.msp", "--json").stdout.splitlines()]
    assert row["format"] == "msp"


def test_a_format_that_cannot_hold_the_mode_falls_back_too(tmp_path, monkeypatch):
    # a float PFM reads through Pillow's PPM plugin; PPM cannot hold floats: TIFF then
    monkeypatch.chdir(tmp_path)
    x = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    Image.fromarray(x).save("f.pfm", format="PPM")
    result = run("max", "f.pfm", "-w", "1")
    assert any("f.pfm: PPM cannot hold this image's mode (F)" in line and "TIFF" in line
               for line in result.stderr.splitlines())
    with Image.open("f_max.tif") as im:
        np.testing.assert_array_equal(np.asarray(im), x)


def test_j2k_output_is_a_raw_codestream_jp2_a_container(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rgb = sample("RGB")
    Image.fromarray(rgb).save("a.png")
    run("max", "a.png", "-w", "1", "-o", "x.j2k", "-q")
    run("max", "a.png", "-w", "1", "-o", "x.jp2", "-q")
    assert (tmp_path / "x.j2k").read_bytes()[:4] == b"\xff\x4f\xff\x51"
    assert (tmp_path / "x.jp2").read_bytes()[4:8] == b"jP  "
    for name in ("x.j2k", "x.jp2"):
        with Image.open(name) as im:
            np.testing.assert_array_equal(np.asarray(im), rgb)


def test_recursive_takes_every_format_pillow_opens(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.makedirs("d")
    Image.fromarray(sample("1", 6, 8)).save("d/m.msp", format="MSP")
    Image.fromarray(sample("RGB")).save("d/a.tga")
    Image.fromarray(sample("RGB")).save("d/doc.pdf")  # Pillow writes PDF, never reads it
    (tmp_path / "d" / "notes.txt").write_text("not an image")
    rows = [json.loads(line) for line in run("info", "d", "-r", "--json").stdout.splitlines()]
    assert sorted(r["input"] for r in rows) == [os.path.join("d", "a.tga"),
                                                os.path.join("d", "m.msp")]


def test_colour_key_transparency_becomes_alpha(tmp_path):
    # tRNS on an RGB PNG (8 and 16 bits): the key colour gets alpha 0, as a palette's would
    rgb16 = np.array([[[1000, 2000, 3000], [4, 5, 6]]], np.uint16)
    path = tmp_path / "k16.png"
    path.write_bytes(png16(rgb16, 2, extra=((b"tRNS", struct.pack(">HHH", 1000, 2000, 3000)),)))
    loaded = read_input(str(path))
    assert loaded.image_mode == "RGBA;16"
    np.testing.assert_array_equal(loaded.arrays[None][..., 3], [[0, 65535]])
    np.testing.assert_array_equal(loaded.arrays[None][..., :3], rgb16)
    rgb8 = sample("RGB")
    Image.fromarray(rgb8).save(tmp_path / "k8.png", transparency=tuple(int(v) for v in rgb8[0, 0]))
    loaded = read_input(str(tmp_path / "k8.png"))
    assert loaded.image_mode == "RGBA" and loaded.arrays[None][0, 0, 3] == 0
    np.testing.assert_array_equal(loaded.arrays[None][..., :3], rgb8)


def test_grey_colour_key_becomes_alpha_at_every_bit_depth(tmp_path):
    # tRNS on a grey PNG: 16 bits gives LA;16 (the key was dropped), 1, 2 and 4 bits LA
    grey16 = np.array([[1000, 2000], [5, 1000]], np.uint16)
    path = tmp_path / "g16.png"
    path.write_bytes(png16(grey16, 0, extra=((b"tRNS", struct.pack(">H", 1000)),)))
    loaded = read_input(str(path))
    assert loaded.image_mode == "LA;16"
    np.testing.assert_array_equal(loaded.arrays[None][..., 0], grey16)
    np.testing.assert_array_equal(loaded.arrays[None][..., 1], [[0, 65535], [65535, 0]])
    bits = sample("1", 6, 8)
    Image.fromarray(bits).save(tmp_path / "g1.png", transparency=1)
    loaded = read_input(str(tmp_path / "g1.png"))
    assert loaded.image_mode == "LA"
    np.testing.assert_array_equal(loaded.arrays[None][..., 1], np.where(bits, 0, 255))
    for bits, key in ((2, 3), (4, 5)):  # Pillow scales these samples, not their key
        raw = b"".join(b"\0" + bytes([int(format(v, f"0{bits}b") * (8 // bits), 2)])
                       for v in (key, key - 1))  # a row of key pixels, a row of others
        ihdr = struct.pack(">IIBBBBB", 8 // bits, 2, bits, 0, 0, 0, 0)
        (tmp_path / f"g{bits}.png").write_bytes(
            b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"tRNS", struct.pack(">H", key))
            + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b""))
        loaded = read_input(str(tmp_path / f"g{bits}.png"))
        assert loaded.image_mode == "LA"
        np.testing.assert_array_equal(loaded.arrays[None][..., 1][:, 0], [0, 255])
    (tmp_path / "plain16.png").write_bytes(png16(grey16, 0))
    loaded = read_input(str(tmp_path / "plain16.png"))
    assert loaded.image_mode == "I;16" and loaded.arrays[None].ndim == 2


def test_tiff_samples_keep_their_own_dtype(tmp_path):
    # Pillow reads int8 as L (uint8) and uint32 as I (int32); the SampleFormat tag says which
    i8 = np.array([[-100, 5], [127, -1]], np.int8)
    Image.fromarray(i8.view(np.uint8)).save(tmp_path / "i8.tif", tiffinfo={339: 2})
    u32 = np.array([[4_000_000_000, 5], [2**32 - 1, 0]], np.uint32)
    Image.fromarray(u32.view(np.int32), "I").save(tmp_path / "u32.tif")
    signed = b"\x53\x01\x03\x00\x01\x00\x00\x00\x02\x00"  # SampleFormat: 2 (signed)
    data = (tmp_path / "u32.tif").read_bytes()
    assert data.count(signed) == 1
    (tmp_path / "u32.tif").write_bytes(data.replace(signed, signed[:-2] + b"\x01\x00"))
    for name, want in (("i8.tif", i8), ("u32.tif", u32)):
        got = read_input(str(tmp_path / name)).arrays[None]
        assert got.dtype == want.dtype and got.tolist() == want.tolist()


def test_a_short_write_says_the_disk_may_be_full():
    # NumPy's tofile on a full disk: an OSError without errno nor strerror
    error = pio._write_error("out/x.npy", OSError("1048576 requested and 524256 written"))
    assert str(error) == ("out/x.npy: cannot write (the disk may be full: 1048576 requested "
                          "and 524256 written)")


def test_a_full_disk_as_the_file_closes_names_the_output(tmp_path, monkeypatch):
    # an .npz is written through a buffer whose rest goes to the disk as the file closes
    real_fdopen = os.fdopen

    class FullAtClose(io.BufferedWriter):
        def close(self):
            super().close()
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(pio.os, "fdopen",
                        lambda fd, mode: FullAtClose(real_fdopen(fd, mode, buffering=0)))
    with pytest.raises(PoolError) as error:
        write_output(str(tmp_path / "out.npz"), {"a": np.zeros(4)}, fmt="npz", like=None)
    assert str(error.value) == f"{tmp_path / 'out.npz'}: cannot write (No space left on device)"
    assert os.listdir(tmp_path) == []


def test_failed_write_through_dot_dot_removes_what_makedirs_made(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def half_write(self, fp, *args, **kwargs):
        fp.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", half_write)
    with pytest.raises(PoolError):
        write_output(os.path.join("a", "..", "b", "x.png"), {None: sample("L")}, fmt="png",
                     like=image_like("L"))
    assert listing(tmp_path) == []


@pytest.mark.parametrize("extra", [{}, {"icc_profile": ImageCms.ImageCmsProfile(
    ImageCms.createProfile("sRGB")).tobytes()}])  # plain VP8L, and VP8X + ICCP + VP8L
def test_lossless_webp_is_written_back_losslessly(tmp_path, monkeypatch, extra):
    monkeypatch.chdir(tmp_path)
    rgb = sample("RGB", 12, 16)
    Image.fromarray(rgb).save("l.webp", lossless=True, **extra)
    Image.fromarray(rgb).save("q.webp", quality=80, **extra)
    assert read_input("l.webp").lossless and not read_input("q.webp").lossless
    run("max", "l.webp", "q.webp", "-w", "2", "-q")
    with Image.open("l_max.webp") as im:  # the max of the input, bit for bit
        np.testing.assert_array_equal(np.asarray(im), block_max(read_input("l.webp").arrays[None]))
    assert not read_input("q_max.webp").lossless  # a lossy input stays lossy


def test_16bit_colour_jpeg2000_read_as_8_bits_says_so(tmp_path):
    cv2 = pytest.importorskip("cv2")  # Pillow cannot write 16-bit colour JPEG 2000
    rgb16 = np.random.default_rng(0).integers(0, 65536, (64, 64, 3)).astype(np.uint16)
    assert cv2.imwrite(str(tmp_path / "c16.jp2"), rgb16)
    data = (tmp_path / "c16.jp2").read_bytes()
    (tmp_path / "c16.j2k").write_bytes(data[data.index(b"jp2c") + 4:])  # the raw codestream
    for name in ("c16.jp2", "c16.j2k"):
        loaded = read_input(str(tmp_path / name))
        assert loaded.image_mode == "RGB" and len(loaded.warnings) == 1
        assert "16-bit colour read as 8 bits" in loaded.warnings[0]
    assert cv2.imwrite(str(tmp_path / "c8.jp2"), (rgb16 >> 8).astype(np.uint8))
    assert read_input(str(tmp_path / "c8.jp2")).warnings == []


def test_cli_junk_is_an_unknown_format(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "junk").write_bytes(b"\x00\x01 not an image, just bytes \xff\xfe\n" * 20)
    result = run("max", "junk", code=1)
    assert error_lines(result) == [
        "poolcli: error: junk: unknown format (not an image, .npy or .npz)"]
    assert listing(tmp_path) == ["junk"]


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


def test_failure_leaves_no_new_folder_behind(tmp_path, monkeypatch):
    def half_write(self, fp, *args, **kwargs):
        fp.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", half_write)
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "other.png").write_bytes(b"x")
    for dest in (tmp_path / "new" / "deeper" / "out.png", tmp_path / "kept" / "sub" / "out.png"):
        with pytest.raises(PoolError, match="No space left"):
            write_output(str(dest), {None: sample("L")}, fmt="png", like=image_like("L"))
    # the folders the writes made are gone; the ones that were there stay, with their files
    assert listing(tmp_path) == ["kept"] and listing(tmp_path / "kept") == ["other.png"]
    monkeypatch.undo()
    dest = tmp_path / "new" / "deeper" / "out.png"
    write_output(str(dest), {None: sample("L")}, fmt="png", like=image_like("L"))
    assert dest.exists()


class _Signal(BaseException):
    """What a signal handler raises (the CLI's Interrupted is one)."""


@pytest.mark.parametrize("when", ["after the open", "during makedirs", "after a first mkdir"])
def test_a_signal_at_any_step_leaves_no_file_or_folder(tmp_path, monkeypatch, when):
    real_open, real_makedirs, real_mkdir = os.open, os.makedirs, os.mkdir

    def open_then_signal(*args, **kwargs):
        real_open(*args, **kwargs)  # the file exists, its descriptor is never returned
        raise _Signal

    def makedirs_then_signal(*args, **kwargs):
        real_makedirs(*args, **kwargs)
        raise _Signal

    def mkdir_then_signal(*args, **kwargs):  # new/ made, new/out.npy's deeper folders not
        real_mkdir(*args, **kwargs)
        raise _Signal

    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / ".out.npy.0000.tmp").write_bytes(b"another writer's")
    if when == "after the open":
        monkeypatch.setattr(pio.os, "open", open_then_signal)
    elif when == "during makedirs":
        monkeypatch.setattr(pio.os, "makedirs", makedirs_then_signal)
    else:
        monkeypatch.setattr(os, "mkdir", mkdir_then_signal)
    with pytest.raises(_Signal):
        write_output(str(tmp_path / "new" / "deeper" / "out.npy"), {None: np.zeros(2)},
                     fmt="npy", like=array_like())
    if when != "after a first mkdir":  # kept/ exists: no mkdir to interrupt there
        with pytest.raises(_Signal):
            write_output(str(tmp_path / "kept" / "out.npy"), {None: np.zeros(2)}, fmt="npy",
                         like=array_like())
    assert listing(tmp_path) == ["kept"]
    assert listing(tmp_path / "kept") == [".out.npy.0000.tmp"]


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


def test_an_npz_member_that_is_not_an_array_is_named_once(tmp_path):
    import zipfile

    path = tmp_path / "mixed.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "not an array")
    with pytest.raises(PoolError) as exc:
        read_input(str(path))
    assert str(exc.value) == f"{path}: member 'readme.txt' is not a .npy array"
