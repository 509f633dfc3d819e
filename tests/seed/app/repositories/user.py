"""Stand-in: the server keeps its own users; the fixture only builds one
(test_auth.py, skipped, would call it)."""


class UserRepository:
    def __init__(self, connection) -> None:
        self.connection = connection
