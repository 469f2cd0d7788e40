"""poolcli: exact, fast pooling of images and feature maps.

>>> from pool_cli import pool
>>> pool([[1, 2], [3, 4]], "max")
array([[4]])
"""

__version__ = "0.1.0"

from .core import MODES, PoolError, make_spec, pool  # noqa: E402

__all__ = ["MODES", "PoolError", "__version__", "make_spec", "pool"]
