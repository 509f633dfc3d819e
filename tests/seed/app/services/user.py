"""Stand-in: the server registers and activates; the fixture only builds one."""


class UserService:
    def __init__(self, users, activation_codes, email_service, settings) -> None:
        self.users = users
        self.activation_codes = activation_codes
        self.email_service = email_service
        self.settings = settings
