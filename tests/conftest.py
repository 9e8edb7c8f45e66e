"""Hypothesis profiles: ``fast`` (default, CI) and ``thorough`` (COPG_HYPOTHESIS=thorough)."""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "fast", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("COPG_HYPOTHESIS", "fast"))
