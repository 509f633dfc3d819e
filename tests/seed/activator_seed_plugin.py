"""pytest plugin that runs the original service's own tests (original/,
byte for byte) against the live activator that scripts/seed-check.sh
started. The stand-in `app` modules beside this file let the tests import
what they import; this plugin replaces the original's conftest.py (which is
never loaded: --noconftest) with the two fixtures it supplied, and skips the
tests that cannot run over HTTP."""

from __future__ import annotations

import os

import pytest

import live

NOT_OVER_HTTP = (
    "calls the original's Python functions (authenticate_basic_user, hash_password, "
    "UserRepository) in its own process: there is nothing of them to call over HTTP"
)
SKIPPED = {
    ("test_auth.py", "test_basic_auth_success"): NOT_OVER_HTTP,
    ("test_auth.py", "test_basic_auth_wrong_password"): NOT_OVER_HTTP,
    ("test_auth.py", "test_basic_auth_unknown_user"): NOT_OVER_HTTP,
}


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        reason = SKIPPED.get((item.path.name, item.name))
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def db_conn():
    """The original's connection to its test database; here the live
    server's database URL. The original's conftest truncates its tables
    after each test; this empties the server's state before each one
    (tables, Redis database, mailbox), so that a test starts clean even
    after an interrupted run."""
    live.reset()
    yield os.environ["DATABASE_URL"]


@pytest.fixture
def settings_env():
    """The original set its settings' environment here, for its in-process
    app; the live server's settings were fixed when the script started it."""
    yield


_log_sizes = pytest.StashKey[dict]()


def pytest_runtest_setup(item) -> None:
    item.stash[_log_sizes] = live.log_sizes()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test's report shows what the servers logged meanwhile."""
    report = yield
    if report.failed and _log_sizes in item.stash:
        report.sections.extend(live.logs_since(item.stash[_log_sizes]))
    return report
