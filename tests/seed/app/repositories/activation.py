"""Stand-in: the server keeps its own codes; the fixture only builds one."""


class ActivationRepository:
    def __init__(self, connection) -> None:
        self.connection = connection
