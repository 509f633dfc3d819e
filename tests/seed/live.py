"""The live activator the stand-in `app` modules speak to.

scripts/seed-check.sh starts `activator serve` and `activator mailbox` (the
real binary) and exports what this module reads: ACTIVATOR_BIN,
ACTIVATOR_URL, MAILBOX_URL, SEED_RUN_DIR (the run's directory, with the
servers' logs) and the servers' own settings (DATABASE_URL, REDIS_URL,
SECRET_KEY, the limits). Nothing here keeps state of its own: every answer
is read from the server, its database, its Redis or its mail sink.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx

# How long to wait for the server to deliver what it queued.
WAIT_SECONDS = 10.0
POLL_SECONDS = 0.05

# The code in the text body, as templates/en/body.txt.hbs words it (no
# Accept-Language is sent, so every email is English). 4 digits by default;
# an inbox that spent its short-code budget gets 8.
CODE = re.compile(r"^Your activation code is: (\d{4}|\d{8})$", re.MULTILINE)

# The state of one test: what the original's conftest truncates (users,
# activation_codes) plus activator's own per-account tables. Not the
# service's own tables (migrations, keys the running server holds in
# memory). No RESTART IDENTITY: ids are never reused, so a send still in
# flight from the previous test cannot be recorded onto a new message that
# took its id.
STATE_TABLES = "users, activation_codes, claims, email_outbox"

# The environment the servers were started with, as it was before any test
# ran: the original's fixtures set DATABASE_URL, REDIS_URL... to their own
# values in this process (monkeypatch.setenv).
SERVER_ENV = dict(os.environ)


def env(name: str) -> str:
    value = SERVER_ENV.get(name)
    if not value:
        raise RuntimeError(f"{name} is not set: run the seed tests with scripts/seed-check.sh")
    return value


def limit(name: str) -> int:
    """One of the server's limits, as the script started it."""
    return int(env(name))


def psql(sql: str, **variables: str) -> list[list[str]]:
    """Rows of `sql` on the server's database; `:'name'` quotes a variable."""
    args = ["psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1"]
    for name, value in variables.items():
        args += ["-v", f"{name}={value}"]
    args.append(env("DATABASE_URL"))
    done = subprocess.run(args, input=sql, capture_output=True, text=True, env=SERVER_ENV)
    if done.returncode != 0:
        raise RuntimeError(f"psql failed: {done.stderr.strip()}\n{sql}")
    return [line.split("|") for line in done.stdout.splitlines() if line]


def reset() -> None:
    """Empty tables, Redis database and mailbox, as at the run's start."""
    psql(f"TRUNCATE {STATE_TABLES} CASCADE")
    # The run's own Redis database (SEED_REDIS_DB): nobody else's.
    subprocess.run(["redis-cli", "-u", env("REDIS_URL"), "FLUSHDB"], check=True,
                   capture_output=True, env=SERVER_ENV)
    httpx.delete(f"{env('MAILBOX_URL')}/v1/messages").raise_for_status()


def outbox_of(email: str) -> list[list[str]]:
    """The recipient's emails in the outbox: status, attempts, last error."""
    return psql(
        "SELECT status, attempts, coalesce(last_error, '') FROM email_outbox"
        " WHERE kind = 'email' AND recipient = lower(:'email') ORDER BY id",
        email=email,
    )


def wait_for_deliveries(email: str) -> None:
    """Returns once no email to `email` is still queued."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        rows = outbox_of(email)
        if all(status != "queued" for status, *_ in rows):
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"emails to {email} still queued after {WAIT_SECONDS:.0f} s "
                f"(status, attempts, last error): {rows}"
            )
        time.sleep(POLL_SECONDS)


def messages(to: str | None = None) -> list[dict]:
    """What the mailbox received, newest first."""
    params = {"limit": 500} | ({"to": to} if to else {})
    response = httpx.get(f"{env('MAILBOX_URL')}/v1/messages", params=params)
    response.raise_for_status()
    return response.json()


class SentCodes(Mapping):
    """`email_service.sent_codes`: the code of the newest activation email
    the mail sink received for each address, once the server has delivered
    everything it queued for it. A missing address is a KeyError, as in the
    original's dict."""

    def __getitem__(self, email: str) -> str:
        wait_for_deliveries(email)
        received = messages(to=email)
        if not received:
            raise KeyError(f"no activation email was delivered to {email} "
                           f"(its outbox: {outbox_of(email)})")
        found = CODE.search(received[0]["body"])
        if not found:
            raise AssertionError(f"the newest email to {email} has no code in its text "
                                 f"body:\n{received[0]['body']}")
        return found.group(1)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(message["to"] for message in messages()))

    def __len__(self) -> int:
        return sum(1 for _ in self)


def user_show(email: str) -> dict | None:
    """`activator user show EMAIL --json`; None when there is no account."""
    done = subprocess.run(
        [env("ACTIVATOR_BIN"), "user", "show", email, "--json"],
        capture_output=True, text=True, env=SERVER_ENV,
        cwd=env("SEED_RUN_DIR"),  # where no .env is
    )
    if done.returncode != 0:
        if f"no account for {email}" in done.stderr:
            return None
        raise AssertionError(f"activator user show {email} --json failed:\n{done.stderr}")
    return json.loads(done.stdout)


class Report(dict):
    """`activator user show --json`; a field it lacks fails, naming it."""

    def __missing__(self, field: str):
        raise AssertionError(
            f"`activator user show --json` has no field {field!r}, which the seed tests "
            f"read (fields: {', '.join(self)})"
        )


def activation_failures(report: Report) -> int:
    """The original's limiter counts failures (and locks at its limit); the
    server counts every attempt in `attempts_in_window`, a count that
    outlives the lockout it starts (src/limits/lock.lua). On an account the
    tests have activated, every attempt since was a failure."""
    return report["attempts_in_window"]


def daily_resends(report: Report) -> int:
    return report["resends_today"]


class ServerCounter(Mapping):
    """A counter of the original's rate limiter, by address, read from the
    server's `user show --json` by `read`."""

    def __init__(self, read) -> None:
        self.read = read

    def __getitem__(self, email: str) -> int:
        report = user_show(email)
        if report is None:
            raise KeyError(f"no account for {email}")
        return self.read(Report(report))

    def __iter__(self) -> Iterator[str]:
        raise TypeError("the server's counters can be read by address only")

    def __len__(self) -> int:
        raise TypeError("the server's counters can be read by address only")


class Proxy:
    """An ASGI app that forwards every request, as it came, to the live
    `activator serve`, and its answer, as it came, back: the bytes of the
    body, the status and the headers, undecoded."""

    # Hop-by-hop, or recomputed by httpx for the request it sends.
    DROPPED = {b"host", b"connection", b"keep-alive", b"transfer-encoding", b"content-length"}

    async def __call__(self, scope, receive, send) -> None:
        assert scope["type"] == "http", scope["type"]
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        url = env("ACTIVATOR_URL") + scope["raw_path"].decode("latin-1")
        if scope["query_string"]:
            url += "?" + scope["query_string"].decode("latin-1")
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in self.DROPPED]
        # A client per request: each test runs in an event loop of its own.
        async with httpx.AsyncClient(timeout=30) as client:
            request = client.build_request(scope["method"], url, headers=headers, content=body)
            response = await client.send(request, stream=True)
            content = b"".join([chunk async for chunk in response.aiter_raw()])
        await send({
            "type": "http.response.start",
            "status": response.status_code,
            "headers": [(k, v) for k, v in response.headers.raw
                        if k.lower() not in self.DROPPED - {b"content-length"}],
        })
        await send({"type": "http.response.body", "body": content})


def log_sizes() -> dict[Path, int]:
    """Where the servers' logs end now."""
    return {path: path.stat().st_size for path in Path(env("SEED_RUN_DIR")).glob("*.log")}


def logs_since(sizes: dict[Path, int]) -> list[tuple[str, str]]:
    """What each server logged since `sizes`, by log name."""
    found = []
    for path in sorted(Path(env("SEED_RUN_DIR")).glob("*.log")):
        with path.open("rb") as log:
            log.seek(sizes.get(path, 0))
            text = log.read().decode("utf-8", "replace")
        if text.strip():
            found.append((f"activator {path.stem} log", text))
    return found
