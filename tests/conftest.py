"""Shared pytest setup: import paths and a moderate hypothesis profile."""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
for _p in (_ROOT, _HERE):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from hypothesis import HealthCheck, settings  # noqa: E402

# Machines (and CI) are small and shared: keep runs short and deterministic-ish.
settings.register_profile(
    "poolcli",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "poolcli"))
