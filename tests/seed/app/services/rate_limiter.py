"""Stand-in: the server answers 429 itself; the tests only import this."""


class RateLimitExceeded(Exception):
    pass
