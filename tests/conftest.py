"""Hypothesis profiles: ``fast`` (default, CI) and ``thorough`` (COPG_HYPOTHESIS=thorough,
randomized, 500 examples)."""

import os

from hypothesis import HealthCheck, settings

# CI's profile is derandomized: the same examples every run, so a red CI is reproducible.
settings.register_profile(
    "fast",
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("COPG_HYPOTHESIS", "fast"))
