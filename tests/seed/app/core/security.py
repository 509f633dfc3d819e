"""Stand-in: only test_auth.py (skipped: not over HTTP) hashes passwords."""


def hash_password(password: str) -> str:
    raise NotImplementedError("the original's function, in its process: not over HTTP")
