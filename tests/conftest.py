import os

from hypothesis import HealthCheck, settings

# CI runs the property tests with at least 500 examples each (issue #2); locally fewer.
settings.register_profile(
    "ci", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
