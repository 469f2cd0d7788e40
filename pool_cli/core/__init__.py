"""The pooling core: pure NumPy, imports nothing else from poolcli."""

from .errors import PoolError
from .modes import MODES, Mode
from .pooling import PoolSpec, make_spec, pool

__all__ = ["MODES", "Mode", "PoolError", "PoolSpec", "make_spec", "pool"]
