"""Stand-in for the original's dependencies: the keys the tests' fixture
overrides (app.main sees which), and what only test_auth.py calls."""


def get_db_connection():
    raise NotImplementedError("the live server has its own connections")


def get_rate_limiter():
    raise NotImplementedError("the live server has its own rate limiter")


def get_user_service():
    raise NotImplementedError("the live server has its own user service")


async def authenticate_basic_user(credentials, users):
    raise NotImplementedError("the original's function, in its process: not over HTTP")
