"""The chaos run: mixed traffic through nginx to the three instances of
scripts/cluster.sh while faults are made, then what must hold afterwards.

    python3 tests/chaos/chaos.py [--duration SECONDS] [--report FILE]

Needs a cluster that is up (it reads .local/cluster/cluster.env) and makes
the faults with scripts/cluster.sh. Loopback only; every loop is bounded
in time. Clients are told apart by their source address: each connects
from an address of its own in 127.0.0.0/8 (nginx keys its limits on it and
passes it to activator in X-Forwarded-For), so thousands of registrants
are not one client.

Traffic: registrations (~10/s); activations of every second registrant
with the code from the mailbox, after a resend for every sixth; a flood of
registrations from one address (refused by the limits); the webhook
receiver gets the events.

Faults, at fixed fractions of the run: SIGKILL of one instance (started
again 3 s later), promotion of the PostgreSQL standby, SIGKILL of the
Redis primary (Sentinel failover, or a Cluster replica's promotion).

Checks, each printed with its figures; exit 1 if one fails:
- every 201 has its account (in the promoted database) and its email (in
  the mailbox);
- duplicate emails and events (the outbox is at-least-once) are each
  explained by a fault shortly before the copy, and no more than the
  in-flight sends those faults can repeat;
- every activated account has its `user.activated` event, verified;
- one client spread over the three instances meets the same limits as on
  one: REGISTER_PER_IP_LIMIT registrations in sequence, one resend of six
  at once, and nginx's log shows each set reached all three instances;
- each fault's window, from the fault to the first registration answered
  201 after its last 5xx (available again for good, not merely once), is
  at most --window (10 s); no 5xx other than a fault's (answered after it,
  asked within 30 s of it).
"""

import argparse
import base64
import calendar
import collections
import http.client
import json
import os
import ssl
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
STATE = os.path.join(ROOT, ".local", "cluster")
PASSWORD = "Chaos-run-passw0rd"
REGISTER_PER_IP_LIMIT = 30  # the default the cluster runs with
RESEND_BURST = 6
EMAIL_CONCURRENCY = 16  # per instance: sends one kill can leave unrecorded


def load_env():
    env = {}
    with open(os.path.join(STATE, "cluster.env")) as file:
        for line in file:
            name, _, value = line.strip().partition("=")
            env[name] = value
    return env


class Client:
    """HTTPS to nginx from one source address, a connection per request."""

    def __init__(self, env):
        url = env["CLUSTER_URL"]
        self.port = int(url.rsplit(":", 1)[1])
        self.context = ssl.create_default_context(cafile=env["CLUSTER_CA"])
        self.context.check_hostname = False

    def send(self, source, method, path, body=None, auth=None):
        headers = {"Content-Type": "application/json"}
        if auth:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        sent = time.monotonic()
        try:
            conn = http.client.HTTPSConnection(
                "127.0.0.1",
                self.port,
                context=self.context,
                timeout=40,
                source_address=(source, 0),
            )
            conn.request(method, path, json.dumps(body) if body is not None else None, headers)
            response = conn.getresponse()
            status, text = response.status, response.read().decode(errors="replace")
            conn.close()
        except OSError as err:
            status, text = 0, str(err)
        return sent, time.monotonic(), status, text


def address(block, n):
    """The n-th source address of a /16 of 127.0.0.0/8."""
    return f"127.{block}.{(n >> 8) & 255}.{(n & 255) or 1}"


class Run:
    def __init__(self, env, duration, run_id):
        self.env = env
        self.client = Client(env)
        self.duration = duration
        self.run_id = run_id
        self.start = time.monotonic()
        self.wall_start = time.time()
        self.stop = threading.Event()
        # The limits are measured before the first fault, which would
        # refuse some of their requests.
        self.limits_done = threading.Event()
        self.lock = threading.Lock()
        self.requests = []  # (sent, done, kind, status, email)
        self.acknowledged = {}  # email -> time of the 201
        self.to_activate = collections.deque()
        self.activated = set()
        self.faults = []  # (monotonic, wall, name)
        self.counter = 0
        self.failures = []

    def now(self):
        return time.monotonic() - self.start

    def record(self, kind, answer, email=None):
        sent, done, status, _ = answer
        with self.lock:
            self.requests.append((sent, done, kind, status, email))

    def next_number(self):
        with self.lock:
            self.counter += 1
            return self.counter

    # ---- traffic --------------------------------------------------------
    def registrar(self, worker):
        n = 0
        while not self.stop.is_set():
            number = self.next_number()
            email = f"chaos-{self.run_id}-{number}@example.com"
            # Four registrations per address: far below the per-IP limit.
            source = address(10 + worker, n // 4 + 1)
            n += 1
            answer = self.client.send(source, "POST", "/auth/register", {"email": email, "password": PASSWORD})
            self.record("register", answer, email)
            if answer[2] == 201:
                with self.lock:
                    self.acknowledged[email] = time.time()
                    if number % 2 == 0:
                        self.to_activate.append((email, number, time.monotonic()))
            self.stop.wait(0.2)

    def latest_message(self, email, newer_than=0):
        url = f"{self.env['CLUSTER_MAILBOX']}/v1/messages?to={urllib.request.quote(email)}&limit=10"
        with urllib.request.urlopen(url, timeout=10) as response:
            messages = json.load(response)
        fresh = [m for m in messages if m["id"] > newer_than and m.get("code")]
        return max(fresh, key=lambda m: m["id"]) if fresh else None

    def wait_message(self, email, newer_than=0, timeout=45):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.latest_message(email, newer_than)
            if message:
                return message
            time.sleep(0.3)
        return None

    def activator(self, worker):
        n = 0
        while not (self.stop.is_set() and not self.to_activate):
            try:
                email, number, _ = self.to_activate.popleft()
            except IndexError:
                time.sleep(0.1)
                continue
            n += 1
            source = address(20 + worker, n)
            message = self.wait_message(email)
            if message is None:
                self.failures.append(f"no email reached {email} within 45 s")
                continue
            if number % 6 == 0:
                answer = self.client.send(source, "POST", "/auth/resend", auth=(email, PASSWORD))
                self.record("resend", answer, email)
                if answer[2] == 202:
                    message = self.wait_message(email, newer_than=message["id"]) or message
            # 503 in a fault's window: try again, as a client would.
            for _ in range(60):
                answer = self.client.send(
                    source, "POST", "/auth/activate", {"code": message["code"]}, auth=(email, PASSWORD)
                )
                self.record("activate", answer, email)
                if answer[2] < 500:
                    break
                time.sleep(0.5)
            if answer[2] == 200:
                with self.lock:
                    self.activated.add(email)
            elif answer[2] != 409:
                self.failures.append(f"activation of {email} answered {answer[2]}: {answer[3][:100]}")

    def flood(self):
        """One address registering as fast as it can be answered: refused
        by nginx's and activator's limits once over them."""
        n = 0
        while not self.stop.is_set():
            n += 1
            email = f"flood-{self.run_id}-{n}@example.com"
            answer = self.client.send("127.30.0.1", "POST", "/auth/register", {"email": email, "password": PASSWORD})
            self.record("flood", answer, email)
            if answer[2] == 201:
                with self.lock:
                    self.acknowledged[email] = time.time()
            self.stop.wait(0.1)

    # ---- limits across instances -----------------------------------------
    def limits(self):
        try:
            self.measure_limits()
        finally:
            self.limits_done.set()

    def measure_limits(self):
        results = {}
        # Registrations in sequence, paced under nginx's 5 r/s.
        source = "127.31.0.1"
        statuses = []
        for n in range(REGISTER_PER_IP_LIMIT + 5):
            email = f"limit-{self.run_id}-{n}@example.com"
            answer = self.client.send(source, "POST", "/auth/register", {"email": email, "password": PASSWORD})
            self.record("limit-register", answer, email)
            statuses.append(answer[2])
            if answer[2] == 201:
                with self.lock:
                    self.acknowledged[email] = time.time()
            time.sleep(0.2)
        results["register"] = (source, statuses)
        # Six resends of one account at once.
        source = "127.31.0.2"
        email = f"limit-resend-{self.run_id}@example.com"
        answer = self.client.send(source, "POST", "/auth/register", {"email": email, "password": PASSWORD})
        self.record("limit-register", answer, email)
        if answer[2] == 201:
            with self.lock:
                self.acknowledged[email] = time.time()
        answers = [None] * RESEND_BURST

        def resend(i):
            answers[i] = self.client.send(source, "POST", "/auth/resend", auth=(email, PASSWORD))

        threads = [threading.Thread(target=resend, args=(i,)) for i in range(RESEND_BURST)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for answer in answers:
            self.record("limit-resend", answer, email)
        results["resend"] = (source, [answer[2] for answer in answers])
        self.limit_results = results

    # ---- faults -----------------------------------------------------------
    def cluster(self, *args):
        out = subprocess.run(
            [os.path.join(ROOT, "scripts", "cluster.sh"), *args], capture_output=True, text=True, timeout=120
        )
        if out.returncode != 0:
            self.failures.append(f"cluster.sh {' '.join(args)} failed: {out.stderr.strip()}")
        return out.stdout.strip()

    def fault(self, name, *args):
        with self.lock:
            self.faults.append((time.monotonic(), time.time(), name))
        print(f"chaos: {self.now():6.1f} s  {name}", flush=True)
        return self.cluster(*args)

    def faults_schedule(self):
        d = self.duration
        plan = [
            (0.20 * d, "SIGKILL serve 2", lambda: self.fault("SIGKILL serve 2", "kill-serve", "2")),
            (0.20 * d + 3, None, lambda: self.cluster("start-serve", "2")),
            (0.42 * d, "PostgreSQL standby promoted", lambda: self.fault("PostgreSQL standby promoted", "promote-pg")),
            (0.65 * d, "Redis primary killed", lambda: self.fault("Redis primary killed", "kill-redis")),
        ]
        if d >= 180:
            # A longer run kills an instance once more, another one.
            plan.append((0.85 * d, "SIGKILL serve 3", lambda: self.fault("SIGKILL serve 3", "kill-serve", "3")))
            plan.append((0.85 * d + 3, None, lambda: self.cluster("start-serve", "3")))
        self.limits_done.wait(timeout=self.duration)
        delay = max(0.0, self.now() + 1 - plan[0][0])
        for at, _, action in sorted(plan, key=lambda p: p[0]):
            if self.stop.wait(max(0, at + delay - self.now())):
                return
            action()

    # ---- the run -------------------------------------------------------------
    def run(self):
        threads = [threading.Thread(target=self.registrar, args=(w,)) for w in range(2)]
        threads += [threading.Thread(target=self.activator, args=(w,)) for w in range(2)]
        threads.append(threading.Thread(target=self.flood))
        limits = threading.Thread(target=self.limits)
        faults = threading.Thread(target=self.faults_schedule)
        for thread in threads + [limits, faults]:
            thread.start()
        time.sleep(self.duration)
        self.stop.set()
        faults.join()
        limits.join()
        for thread in threads:
            thread.join(timeout=120)
        self.traffic_end = time.monotonic()


def primary_port(env):
    for port in env["CLUSTER_PG_PORTS"].split(","):
        out = psql(port, "SELECT pg_is_in_recovery()")
        if out == "f":
            return port
    raise SystemExit("chaos: no PostgreSQL primary answers")


def psql(port, sql):
    out = subprocess.run(
        ["runuser", "-u", "postgres", "--", "psql", "-h", "127.0.0.1", "-p", port, "-U", "postgres",
         "-d", "activator", "-Atqc", sql],
        capture_output=True, text=True, cwd="/", timeout=60,
    )
    return out.stdout.strip()


def get_json(url):
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--window", type=float, default=10, help="longest fault window allowed, seconds")
    parser.add_argument("--report", help="also write the figures here, as JSON")
    args = parser.parse_args()
    env = load_env()
    run = Run(env, args.duration, f"{int(time.time())}{os.getpid()}")
    print(f"chaos: {args.duration:.0f} s of traffic through {env['CLUSTER_URL']} (Redis: {env['CLUSTER_REDIS']})",
          flush=True)
    run.run()
    checks = []

    def check(ok, text):
        checks.append((ok, text))
        print(f"{'ok  ' if ok else 'FAIL'}  {text}", flush=True)

    # ---- windows and 5xx ---------------------------------------------------------
    requests = sorted(run.requests)
    errors = [r for r in requests if r[3] >= 500 or r[3] == 0]
    # A fault's answers 5xx (or none) are those given after it and asked
    # within 30 s of it (before the next one). Its window runs from the
    # fault to the first registration answered 201 that was asked after
    # the last of them: available again for good, not merely once.
    windows = []
    attributed = set()
    starts = [at for at, _, _ in run.faults] + [float("inf")]
    for (at, wall, name), following in zip(run.faults, starts[1:]):
        own = [r for r in errors if r[1] >= at and r[0] <= min(at + 30, following)]
        attributed.update(id(r) for r in own)
        after = max((r[1] for r in own), default=at)
        first = next((r for r in requests if r[0] >= at and r[2] == "register" and r[3] == 201), None)
        good = next((r for r in requests if r[0] >= after and r[2] == "register" and r[3] == 201), None)
        end = good[1] if good else run.traffic_end
        windows.append((name, at, end, good is not None, len(own), (first[1] - at) if first else None))
    outside = [r for r in errors if id(r) not in attributed]
    for name, at, end, recovered, count, first in windows:
        first_text = f"{first:.2f} s" if first is not None else "never"
        check(recovered and end - at <= args.window,
              f"{name}: available again after {end - at:.2f} s ({count} answers 5xx or none; "
              f"a first 201 after {first_text})")
    statuses = collections.Counter((r[2], r[3]) for r in requests)
    by_kind = collections.defaultdict(dict)
    for (kind, status), count in sorted(statuses.items()):
        by_kind[kind][status] = count
    print("chaos: answers by kind and status: " + json.dumps(by_kind), flush=True)
    check(not outside, f"{len(outside)} answers 5xx or none outside the fault windows (of {len(requests)})"
          + "".join(f"\n      {r[2]} {r[3]} at {r[0] - run.start:.2f} s" for r in outside[:10]))

    # ---- the outbox drains -----------------------------------------------------
    acknowledged = dict(run.acknowledged)
    deadline = time.monotonic() + 60
    while True:
        messages = get_json(f"{env['CLUSTER_MAILBOX']}/v1/messages?limit=1000000")
        reached = {m["to"] for m in messages}
        missing = [e for e in acknowledged if e not in reached]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(1)
    port = primary_port(env)
    stored = set(psql(port, "SELECT email FROM users").split("\n"))
    lost = [e for e in acknowledged if e not in stored]
    check(not lost, f"{len(acknowledged)} registrations answered 201: {len(lost)} without their account"
          + "".join(f"\n      {e}" for e in lost[:10]))
    check(not missing, f"{len(acknowledged)} registrations answered 201: {len(missing)} without their email"
          + "".join(f"\n      {e}" for e in missing[:10]))

    # ---- duplicates ---------------------------------------------------------------
    def explained(wall, within=60):
        """The fault within `within` seconds before `wall`, if any."""
        before = [(w, name) for _, w, name in run.faults if 0 <= wall - w <= within]
        return max(before)[1] if before else None

    copies = collections.defaultdict(list)
    for m in messages:
        copies[(m["to"], m["code"])].append(m)
    duplicates = []
    for (to, code), same in copies.items():
        for extra in sorted(same, key=lambda m: m["id"])[1:]:
            wall = calendar.timegm(time.strptime(extra["received_at"][:19], "%Y-%m-%dT%H:%M:%S"))
            duplicates.append((to, explained(wall)))
    repeatable = EMAIL_CONCURRENCY * sum(1 for *_, name in run.faults if "serve" in name or "PostgreSQL" in name)
    unexplained = [d for d in duplicates if d[1] is None]
    check(not unexplained and len(duplicates) <= repeatable,
          f"{len(duplicates)} duplicate emails (bound {repeatable}: {EMAIL_CONCURRENCY} in-flight sends per "
          f"instance killed or database switched), {len(unexplained)} unexplained"
          + "".join(f"\n      {to}: after {why}" for to, why in duplicates[:10]))

    # ---- events ----------------------------------------------------------------------
    active = set(psql(port, "SELECT email FROM users WHERE is_active").split("\n")) - {""}
    missing_active = run.activated - active
    check(not missing_active, f"{len(run.activated)} activations answered 200: {len(missing_active)} not active")
    deadline = time.monotonic() + 60
    while True:
        events = get_json(f"{env['CLUSTER_WEBHOOKS']}/received")
        announced = {e["body"]["data"]["email"] for e in events
                     if e["verified"] and e["body"]["type"] == "user.activated"}
        unannounced = active - announced
        if not unannounced or time.monotonic() > deadline:
            break
        time.sleep(1)
    check(not unannounced, f"{len(active)} accounts active: {len(unannounced)} without a verified user.activated event"
          + "".join(f"\n      {e}" for e in list(unannounced)[:10]))
    ids = collections.Counter(e["webhook_id"] for e in events if e["status"] == 204)
    event_duplicates = sum(count - 1 for count in ids.values() if count > 1)
    check(event_duplicates <= repeatable,
          f"{len(events)} events received, {event_duplicates} delivered twice (bound {repeatable})")

    # ---- limits across instances ---------------------------------------------------------
    upstreams = collections.defaultdict(set)
    instances = {f"127.0.0.1:{port}" for port in env["CLUSTER_SERVE_PORTS"].split(",")}
    with open(env["CLUSTER_ACCESS_LOG"]) as log:
        for line in log:
            source = line.split(" ", 1)[0]
            # "upstream=A/STATUS/TIME", A being "a:p" or "a:p, b:p" when
            # nginx tried a second instance; "-" when nginx answered alone.
            field = line.split("upstream=", 1)[1].split("/", 1)[0] if "upstream=" in line else ""
            upstreams[source].update(a.strip() for a in field.split(",") if a.strip() in instances)
    source, statuses_ = run.limit_results["register"]
    accepted = statuses_.count(201)
    check(accepted == REGISTER_PER_IP_LIMIT and statuses_[REGISTER_PER_IP_LIMIT:] == [429] * 5
          and len(upstreams[source]) == 3,
          f"one client's {len(statuses_)} registrations over {len(upstreams[source])} instances: {accepted} accepted "
          f"(limit {REGISTER_PER_IP_LIMIT}), then {statuses_[REGISTER_PER_IP_LIMIT:]}")
    source, statuses_ = run.limit_results["resend"]
    check(sorted(statuses_) == [202] + [429] * (RESEND_BURST - 1) and len(upstreams[source]) >= 2,
          f"{RESEND_BURST} resends of one account at once over {len(upstreams[source])} instances: "
          f"{sorted(statuses_)} (one allowed a minute)")
    flood = collections.Counter(r[3] for r in requests if r[2] == "flood")
    check(flood.get(201, 0) <= REGISTER_PER_IP_LIMIT,
          f"a flood from one address: {dict(flood)} ({REGISTER_PER_IP_LIMIT} accepted at most)")

    for failure in run.failures:
        check(False, failure)
    failed = [text for ok, text in checks if not ok]
    summary = {
        "duration_s": args.duration,
        "redis": env["CLUSTER_REDIS"],
        "requests": len(requests),
        "answers": by_kind,
        "windows_s": {name: round(end - at, 2) for name, at, end, *_ in windows},
        "errors_in_windows": {name: count for name, _, _, _, count, _ in windows},
        "errors_outside_windows": len(outside),
        "acknowledged": len(acknowledged),
        "activated": len(run.activated),
        "duplicate_emails": len(duplicates),
        "duplicate_events": event_duplicates,
        "failed_checks": len(failed),
    }
    print("chaos: " + json.dumps(summary), flush=True)
    if args.report:
        with open(args.report, "w") as file:
            json.dump(summary, file, indent=2)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
