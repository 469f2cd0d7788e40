"""poolcli: exact, fast pooling of images and feature maps.

>>> from pool_cli import pool
>>> pool([[1, 2], [3, 4]], "max")
array([[4]])
"""

__version__ = "0.1.0"

from .core import MODES, PoolError  # noqa: E402


def __getattr__(name):
    # pool and make_spec load NumPy: not needed for `poolcli --version` or `--help`
    if name in ("pool", "make_spec"):
        from . import core

        return getattr(core, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["MODES", "PoolError", "__version__", "make_spec", "pool"]
