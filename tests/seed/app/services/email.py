"""Stand-in for the original's email service, which the tests' stub
subclasses: what the stub holds as sent is what the mail sink received."""

import live


class EmailService:
    def _mailbox(self) -> live.SentCodes:
        return live.SentCodes()

    def _start_empty(self, codes: dict) -> None:
        # The stub's __init__ sets `self.sent_codes = {}`: the server sends
        # the codes now, and every test starts with an empty mailbox.
        assert codes == {}, codes

    sent_codes = property(_mailbox, _start_empty)
