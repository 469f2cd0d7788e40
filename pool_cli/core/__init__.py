"""The pooling core: pure NumPy, imports nothing else from poolcli."""

from .errors import PoolError
from .modes import MODES, Mode
from .pooling import PoolSpec, check_dtype, make_spec, pool

__all__ = ["MODES", "Mode", "PoolError", "PoolSpec", "check_dtype", "make_spec", "pool"]
