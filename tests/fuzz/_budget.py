"""The fuzz suite's fixed budget: deterministic (derandomized), bounded examples and time.

``FUZZ_SCALE`` (an environment variable, default 1) multiplies every ``max_examples``
for a longer local run; CI runs the default, about a minute on two cores.
"""

from __future__ import annotations

import os
from datetime import timedelta

from hypothesis import HealthCheck, settings

_SCALE = max(1, int(os.environ.get("FUZZ_SCALE", "1")))


def budget(max_examples: int) -> settings:
    """Settings for one fuzz test: ``max_examples`` (times ``FUZZ_SCALE``), a 5 s deadline."""
    return settings(
        max_examples=max_examples * _SCALE,
        deadline=timedelta(seconds=5),
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
