"""The pooling core: pure NumPy, imports nothing else from poolcli.

The errors and the table of modes load without NumPy; the rest on first use.
"""

from .errors import PoolError
from .modes import MODES, Mode

_LAZY = {"PoolSpec", "check_dtype", "make_spec", "pool"}


def __getattr__(name):
    if name in _LAZY:
        from . import pooling

        return getattr(pooling, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["MODES", "Mode", "PoolError", "PoolSpec", "check_dtype", "make_spec", "pool"]
