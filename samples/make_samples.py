#!/usr/bin/env python3
"""Make the derived sample files in ``samples/`` from the bundled photographs.

Run from the repository root (or from anywhere; paths are relative to this file)::

    python samples/make_samples.py

Inputs (committed, copied unchanged from the scikit-image wheel, see README.md):
    astronaut.png, coffee.png, chelsea.png

Outputs (overwritten on every run):
    chelsea_rgba.png      RGBA 451x300, photo + smooth rounded-rectangle vignette in alpha
    astronaut_gray16.png  16-bit greyscale 512x512 (Pillow mode I;16), full 0..65535 range
    features.npy          float32 (8, 133, 200) edge/blob filter responses of coffee.png

Only NumPy and Pillow are used; no network, no randomness, so every run gives the
same files (the PNG bytes depend only on the zlib that Pillow links against).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent

# Channel names of features.npy, in order (also listed in README.md).
FEATURE_NAMES = (
    "sobel_x",  # horizontal gradient (positive where it gets brighter to the right)
    "sobel_y",  # vertical gradient (positive where it gets brighter downwards)
    "log_s2",  # -sigma^2 * Laplacian of Gaussian, sigma 2 (bright blobs positive)
    "log_s4",  # same, sigma 4
    "dog_1_1.6",  # G(sigma 1) - G(sigma 1.6)
    "gabor_0",  # even (cosine) Gabor, stripes varying along x (responds to vertical edges/bars)
    "gabor_60",  # same, rotated 60 degrees
    "gabor_120",  # same, rotated 120 degrees
)


# --------------------------------------------------------------------------- colour


def load_rgb(name: str) -> np.ndarray:
    """Load an 8-bit RGB photo as float64 in [0, 1], shape (H, W, 3)."""
    with Image.open(HERE / name) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Relative luminance Y (Rec. 709 / sRGB primaries), re-encoded with the sRGB curve.

    The result is a perceptual grey level in [0, 1] (what a grey-scale print of the
    photo would show), computed in float so it is not limited to 256 levels.
    """
    lin = srgb_to_linear(rgb)
    y = lin @ np.array([0.2126, 0.7152, 0.0722])
    return linear_to_srgb(y)


# --------------------------------------------------------------------------- filters


def correlate2d(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """2-D correlation, same output size, mirror ('symmetric') boundary.

    Implemented as a sum of shifted slices: exact, deterministic, and fast enough for
    the small kernels and images used here.
    """
    kh, kw = kernel.shape
    ry, rx = kh // 2, kw // 2
    pad = np.pad(img, ((ry, ry), (rx, rx)), mode="symmetric")
    h, w = img.shape
    out = np.zeros_like(img, dtype=np.float64)
    for dy in range(kh):
        for dx in range(kw):
            k = kernel[dy, dx]
            if k != 0.0:
                out += k * pad[dy : dy + h, dx : dx + w]
    return out


def correlate_sep(img: np.ndarray, ky: np.ndarray, kx: np.ndarray) -> np.ndarray:
    """Separable correlation: ``ky`` along rows (axis 0), then ``kx`` along columns."""
    return correlate2d(correlate2d(img, ky[:, None]), kx[None, :])


def gauss1d(sigma: float, order: int = 0) -> np.ndarray:
    """Sampled Gaussian (order 0) or its 2nd derivative (order 2), radius ceil(4 sigma)."""
    r = int(np.ceil(4 * sigma))
    x = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-0.5 * (x / sigma) ** 2)
    g /= g.sum()
    if order == 0:
        return g
    if order == 2:
        k = g * (x**2 - sigma**2) / sigma**4
        return k - k.mean()  # exactly zero sum: a flat image gives exactly 0
    raise ValueError(order)


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    g = gauss1d(sigma)
    return correlate_sep(img, g, g)


def neg_log(img: np.ndarray, sigma: float) -> np.ndarray:
    """-sigma^2 * Laplacian of Gaussian (scale-normalised; bright blobs positive)."""
    g, g2 = gauss1d(sigma), gauss1d(sigma, 2)
    lap = correlate_sep(img, g2, g) + correlate_sep(img, g, g2)
    return -(sigma**2) * lap


def gabor_even(sigma: float, wavelength: float, theta_deg: float) -> np.ndarray:
    """Zero-mean, unit-L1 even (cosine) Gabor kernel; theta is the wave direction."""
    r = int(np.ceil(3 * sigma))
    y, x = np.mgrid[-r : r + 1, -r : r + 1].astype(np.float64)
    t = np.deg2rad(theta_deg)
    u = x * np.cos(t) + y * np.sin(t)
    env = np.exp(-0.5 * (x**2 + y**2) / sigma**2)
    k = env * np.cos(2 * np.pi * u / wavelength)
    k -= env * (k.sum() / env.sum())  # remove the DC response, keep the envelope shape
    return k / np.abs(k).sum()


SOBEL_D = np.array([-1.0, 0.0, 1.0]) / 2.0  # central difference
SOBEL_S = np.array([1.0, 2.0, 1.0]) / 4.0  # smoothing


def feature_bank(y: np.ndarray) -> np.ndarray:
    """Stack of 8 filter responses of grey image ``y`` -> float32 (8, H, W)."""
    chans = [
        correlate_sep(y, SOBEL_S, SOBEL_D),  # d/dx
        correlate_sep(y, SOBEL_D, SOBEL_S),  # d/dy
        neg_log(y, 2.0),
        neg_log(y, 4.0),
        gaussian_blur(y, 1.0) - gaussian_blur(y, 1.6),
        correlate2d(y, gabor_even(3.0, 8.0, 0.0)),
        correlate2d(y, gabor_even(3.0, 8.0, 60.0)),
        correlate2d(y, gabor_even(3.0, 8.0, 120.0)),
    ]
    assert len(chans) == len(FEATURE_NAMES)
    return np.stack(chans).astype(np.float32)


# --------------------------------------------------------------------------- outputs


def smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def make_rgba() -> Path:
    """chelsea.png + alpha: opaque centre, smooth ramp, fully transparent corners.

    The mask is a superellipse |x/a|^4 + |y/b|^4 (a rounded rectangle) spanning the
    image; alpha is 1 - smoothstep(0.7, 1.0, d). RGB is kept unchanged everywhere
    (not premultiplied, not zeroed under alpha 0).
    """
    with Image.open(HERE / "chelsea.png") as im:
        rgb = np.asarray(im.convert("RGB"))
    h, w = rgb.shape[:2]
    yy = (np.arange(h) + 0.5 - h / 2) / (h / 2)
    xx = (np.arange(w) + 0.5 - w / 2) / (w / 2)
    d = (np.abs(xx[None, :]) ** 4 + np.abs(yy[:, None]) ** 4) ** 0.25
    alpha = 1.0 - smoothstep(0.7, 1.0, d)
    a8 = np.floor(alpha * 255.0 + 0.5).astype(np.uint8)
    out = np.dstack([rgb, a8])
    path = HERE / "chelsea_rgba.png"
    Image.fromarray(out).save(path, optimize=True)
    return path


def make_gray16() -> Path:
    """astronaut.png -> luminance (float) -> Gaussian sigma 0.7 -> stretch to 0..65535."""
    y = luminance(load_rgb("astronaut.png"))
    y = gaussian_blur(y, 0.7)
    y = (y - y.min()) / (y.max() - y.min())
    g16 = np.floor(y * 65535.0 + 0.5).astype(np.uint16)
    path = HERE / "astronaut_gray16.png"
    # A 2-D uint16 array becomes Pillow mode "I;16", saved as a 16-bit grey PNG.
    Image.fromarray(g16).save(path)
    return path


def make_features() -> Path:
    """coffee.png -> luminance -> 3x3 box-average (133x200) -> 8-filter bank."""
    y = luminance(load_rgb("coffee.png"))  # (400, 600)
    h, w = (y.shape[0] // 3) * 3, (y.shape[1] // 3) * 3  # 399, 600
    y = y[:h, :w].reshape(h // 3, 3, w // 3, 3).mean(axis=(1, 3))  # (133, 200)
    feats = feature_bank(y)
    path = HERE / "features.npy"
    np.save(path, feats, allow_pickle=False)
    return path


def main() -> None:
    for make in (make_rgba, make_gray16, make_features):
        path = make()
        print(f"wrote {path.relative_to(HERE.parent)} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
