"""Stand-in for the original's FastAPI app: an ASGI app forwarding every
request to the live `activator serve` (httpx's ASGITransport, in the
tests' fixture, calls it as it called the original)."""

import live
from app.api.deps import get_rate_limiter


def serve_counters(limiter) -> None:
    """The fixture hands the app its rate limiter (a MemoryRateLimiter,
    defined in the test file); the server limits with its own settings and
    counters, so check that they are the limits the fixture asked for and
    make the limiter's counters read the server's."""
    asked = (limiter.max_activation_attempts, limiter.per_minute_resend, limiter.daily_resend)
    served = tuple(live.limit(name) for name in (
        "ACTIVATION_ATTEMPT_LIMIT", "RESEND_PER_MINUTE_LIMIT", "RESEND_DAILY_LIMIT"))
    assert asked == served, f"the fixture's limits {asked} are not the server's {served}"
    limiter.activation_failures = live.ServerCounter(live.activation_failures)
    limiter.daily_resends = live.ServerCounter(live.daily_resends)
    # Counters the server does not show: reading them fails instead of
    # answering from the limiter's own, never-used, memory.
    del limiter.locked, limiter.minute_resends


class DependencyOverrides(dict):
    def __setitem__(self, dependency, provide) -> None:
        super().__setitem__(dependency, provide)
        if dependency is get_rate_limiter:
            serve_counters(provide())


app = live.Proxy()
app.dependency_overrides = DependencyOverrides()
