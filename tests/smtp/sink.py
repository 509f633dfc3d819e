#!/usr/bin/env python3
"""A real SMTP server (aiosmtpd) for the integration tests.

Answers by the recipient's local part:
  reject*  550 at RCPT, always
  flaky*   450 at RCPT the first --times times (per address), then 250
  later*   451 at RCPT the first --times times (per address), then 250
  busy*    452 at RCPT the first --times times (per address), then 250
  anything else 250

--port offers STARTTLS, --tls-port requires it (both with --cert/--key, a
certificate the test trusts); AUTH is taken with any credentials, over TLS
only. Every RCPT answer and every message is written to stdout as one JSON
line; {"kind": "ready"} first. The test reads them; nothing else is kept.
"""
import argparse
import json
import logging
import ssl
import sys
import threading
import warnings
from collections import Counter

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--tls-port", type=int, required=True)
parser.add_argument("--cert", required=True)
parser.add_argument("--key", required=True)
parser.add_argument("--times", type=int, default=1)
args = parser.parse_args()

# Refused handshakes are part of the tests; aiosmtpd's tracebacks are noise.
logging.getLogger("mail.log").setLevel(logging.CRITICAL)
warnings.filterwarnings("ignore", category=DeprecationWarning)

context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(args.cert, args.key)
seen = Counter()
out = threading.Lock()


def emit(**event):
    with out:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()


def tls(server):
    return server.transport.get_extra_info("ssl_object") is not None


class Handler:
    async def handle_RCPT(self, server, session, envelope, address, options):
        local = address.split("@")[0].lower()
        seen[address] += 1
        again = seen[address] <= args.times
        if local.startswith("reject"):
            reply = "550 5.1.1 No such user here"
        elif local.startswith("flaky") and again:
            reply = "450 4.2.1 Mailbox busy, try again"
        elif local.startswith("later") and again:
            reply = "451 4.3.0 Try again later"
        elif local.startswith("busy") and again:
            reply = "452 4.3.1 Insufficient system storage"
        else:
            reply = "250 OK"
            envelope.rcpt_tos.append(address)
        emit(kind="rcpt", rcpt=address, reply=reply, tls=tls(server))
        return reply

    async def handle_DATA(self, server, session, envelope):
        emit(
            kind="message",
            mail_from=envelope.mail_from,
            rcpt_tos=envelope.rcpt_tos,
            tls=tls(server),
            auth=session.auth_data,
            data=envelope.content.decode("utf-8", "replace"),
        )
        return "250 2.0.0 Queued"


def authenticator(server, session, envelope, mechanism, auth_data):
    return AuthResult(success=True, auth_data=auth_data.login.decode())


common = dict(
    hostname="127.0.0.1",
    tls_context=context,
    authenticator=authenticator,
    decode_data=False,
)
plain = Controller(Handler(), port=args.port, **common)
required = Controller(Handler(), port=args.tls_port, require_starttls=True, **common)
plain.start()
required.start()
emit(kind="ready")
try:
    # Until the test kills it or closes its stdin.
    sys.stdin.read()
finally:
    plain.stop()
    required.stop()
