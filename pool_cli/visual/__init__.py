"""Pictures and numbers that show what pooling did: contact sheets, feature grids, fidelity.

Needs NumPy and Pillow only. Import it lazily (``import pool_cli.visual``): it loads Pillow.

>>> from pool_cli.visual import psnr, ssim
>>> import numpy as np
>>> psnr(np.zeros(4), np.zeros(4)), ssim(np.ones((12, 12)), np.ones((12, 12)))
(inf, 1.0)
"""

from .colormaps import COLORMAPS, apply_colormap, get_colormap
from .metrics import default_data_range, energy_kept, psnr, ssim, upscale_nearest
from .render import compare_sheet, compose_sheet, feature_grid, image_to_rgb

__all__ = ["COLORMAPS", "apply_colormap", "compare_sheet", "compose_sheet",
           "default_data_range", "energy_kept", "feature_grid", "get_colormap", "image_to_rgb",
           "psnr", "ssim", "upscale_nearest"]
