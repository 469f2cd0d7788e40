"""Pictures and numbers that show what pooling did: contact sheets, feature grids, fidelity.

Needs NumPy and Pillow only; importing it loads Pillow, so the CLI imports it lazily.

- :func:`compare_sheet`: the input and one panel per mode, scaled back up (``compare``).
- :func:`feature_grid`: a feature map as a grid of colour-mapped tiles (``show``).
- :func:`analyze` and :func:`scatter_plot`: time, throughput and fidelity per mode and
  geometry, and time against PSNR (``analyze``).
- :mod:`~pool_cli.visual.metrics`: :func:`psnr`, :func:`ssim` (:func:`ssim_scorer` for many
  tests of one reference), :func:`energy_kept`, :func:`upscale_nearest`; :mod:`~pool_cli.visual.colormaps`: viridis, gray, coolwarm.

>>> import numpy as np
>>> from pool_cli.visual import psnr, ssim
>>> psnr(np.zeros(4), np.zeros(4)), ssim(np.ones((12, 12)), np.ones((12, 12)))
(inf, 1.0)
"""

from .analysis import UPSCALING, Analysis, analyze, geometry_label
from .colormaps import COLORMAPS, apply_colormap, get_colormap
from .metrics import default_data_range, energy_kept, psnr, ssim, ssim_scorer, upscale_nearest
from .plot import points_from_rows, scatter_plot
from .render import (
    CompareResult, compare_sheet, compose_sheet, feature_grid, image_to_rgb, select_channels,
)

__all__ = ["COLORMAPS", "UPSCALING", "Analysis", "CompareResult", "analyze", "apply_colormap",
           "compare_sheet", "compose_sheet", "default_data_range", "energy_kept",
           "feature_grid", "geometry_label", "get_colormap", "image_to_rgb",
           "points_from_rows", "psnr", "scatter_plot", "select_channels", "ssim",
           "ssim_scorer", "upscale_nearest"]
