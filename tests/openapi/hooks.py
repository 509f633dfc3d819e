"""Hooks for the OpenAPI tester (scripts/openapi-check.sh).

The schema states every rule of the register body but two, which no JSON
Schema keyword can: an address is valid when email-validator (the library
the original service validated with, and whose rules activator ports) says
so, beyond `format: email`; and a password may have at most 72 UTF-8 bytes
(bcrypt reads no more). Bodies breaking only these rules are not generated.
"""

import email_validator
import schemathesis


def _valid_address(email):
    try:
        email_validator.validate_email(email.strip(), check_deliverability=False)
    except email_validator.EmailNotValidError:
        return False
    local = email.strip().rsplit("@", 1)[0]
    # activator also holds the local part to RFC 5321's 64 characters.
    return len(local) <= 64


@schemathesis.hook
def filter_body(ctx, body):
    if not isinstance(body, dict):
        return True
    email = body.get("email")
    if isinstance(email, str) and "@" in email and not _valid_address(email):
        return False
    password = body.get("password")
    if isinstance(password, str) and len(password.encode("utf-8", "surrogatepass")) > 72:
        return False
    return True
