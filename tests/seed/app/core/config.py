"""Stand-in for the original's settings: the live server's limits."""

from functools import lru_cache
from types import SimpleNamespace

import live


@lru_cache  # as the original's, for the tests' get_settings.cache_clear()
def get_settings() -> SimpleNamespace:
    return SimpleNamespace(
        activation_attempt_limit=live.limit("ACTIVATION_ATTEMPT_LIMIT"),
        resend_per_minute_limit=live.limit("RESEND_PER_MINUTE_LIMIT"),
        resend_daily_limit=live.limit("RESEND_DAILY_LIMIT"),
    )
