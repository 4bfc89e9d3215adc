#!/usr/bin/env python
"""Load test: N members of staff using the real server at once, then a check that nothing
was lost, duplicated or left out of the index.

It starts `flask --app wsgi serve` (waitress) on a free loopback port with a throwaway data
folder, signs N users in, and for a fixed time each one files near-misses, edits and
submits their drafts, searches and reads cases (the first of each department also
approves its reports as manager, the last one publishes them as reviewer), pausing before each step for a random time
(exponential, mean --think seconds, default 2: a person who clicks every two seconds, far
busier than anyone filing a report; --think 0 = no pause at all, a saturation test).
Requests go only to 127.0.0.1; the run stops by itself. At the end it checks that every
acknowledged report exists exactly once with the content sent and is found by search (a
published one by another member of staff), that `reindex --check` finds no drift, and it prints throughput, p50/p95/p99 latency per step and for the save and
submit POSTs alone, errors by type, and the server's peak memory and CPU time.

    .venv/bin/python scripts/bench_load.py [--users 20] [--seconds 60] [--think 2]
"""

import argparse
import http.cookiejar
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kb import create_app, search, users  # noqa: E402
from kb.db import database_path, get_db  # noqa: E402

PASSWORD = "load-test-password"
QUERIES = ["FAX 誤送信", "USB 紛失", "メール 宛先 間違い", "通知書 誤送付", "窓口 交付", "委託先 漏えい",
           "封入", "BCC", "個人情報", "ろうえい 研修"]
DEPARTMENTS = ("kumin-koseki", "kumin-kazei", "fukushi-kourei", "kodomo-hoiku", "kenkou-suishin")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # the 303 surfaces as an HTTPError, timed on its own


def percentile(values, share):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))] if ordered else 0.0


class User:
    def __init__(self, base, login, rng, duties=()):
        self.base, self.rng, self.login, self.duties = base, rng, login, duties
        cookies = urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        self.opener = urllib.request.build_opener(cookies)
        self.no_redirect = urllib.request.build_opener(cookies, NoRedirect)
        self.requests: dict[str, list[float]] = defaultdict(list)
        page = self.get("/login")
        self.post("/login", {"csrf_token": self.token(page), "login": login, "password": PASSWORD})
        self.drafts: dict[int, tuple[int, str]] = {}  # case id → (version, summary)
        self.acknowledged: dict[int, str] = {}
        self.pending: dict[int, str] = {}  # sent, answer lost: either version may be stored
        self.case_ids: list[int] = []

    def get(self, path):
        return self.get_url(self.base + path)[1]

    def get_url(self, url):
        with self.opener.open(url, timeout=30) as response:
            return response.geturl(), response.read().decode()

    def post(self, path, data, label=None):
        """POST and follow the redirect; ``label`` records the POST alone (the answer
        that says the report is saved), apart from the page it redirects to."""
        opener = self.opener if label is None else self.no_redirect
        started = time.perf_counter()
        try:
            with opener.open(self.base + path, urllib.parse.urlencode(data).encode(),
                             timeout=30) as response:
                return response.geturl(), response.read().decode()
        except urllib.error.HTTPError as exc:
            if label is None or exc.code not in (302, 303):
                raise
            self.requests[label].append((time.perf_counter() - started) * 1000)
            return self.get_url(urllib.parse.urljoin(self.base + path, exc.headers["Location"]))

    @staticmethod
    def token(page):
        return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)

    def file(self, serial):
        page = self.get("/reports/new/near_miss")
        summary = f"負荷試験 {serial}：封入前に宛名と中身を読み合わせて別人の通知に気づいた。"
        url, _ = self.post("/reports/new/near_miss", {
            "csrf_token": self.token(page), "action": "save", "summary": summary,
            "how_found": "二人で読み合わせた。", "task": "postal"}, label="save")
        case_id = int(re.search(r"/reports/(\d+)/edit", url).group(1))
        self.drafts[case_id] = (1, summary)
        self.acknowledged[case_id] = summary

    def edit(self, serial):
        if not self.drafts:
            return self.file(serial)
        case_id = self.rng.choice(list(self.drafts))
        version, summary = self.drafts[case_id]
        page = self.get(f"/reports/{case_id}/edit")
        summary = f"{summary.split('（')[0]}（追記 {serial}）"
        self.pending[case_id] = summary
        self.post(f"/reports/{case_id}/edit", {
            "csrf_token": self.token(page), "action": "save", "version": version,
            "summary": summary, "how_found": "二人で読み合わせた。", "task": "postal"},
            label="save")
        self.drafts[case_id] = (version + 1, summary)
        self.acknowledged[case_id] = summary

    def submit(self, serial):
        if not self.drafts:
            return self.file(serial)
        case_id = self.rng.choice(list(self.drafts))
        version, summary = self.drafts.pop(case_id)
        page = self.get(f"/reports/{case_id}/edit")
        url, _ = self.post(f"/reports/{case_id}/edit", {
            "csrf_token": self.token(page), "action": "submit", "version": version,
            "summary": summary, "how_found": "二人で読み合わせた。", "task": "postal",
            "pii_acknowledged": "1"}, label="submit")
        if "/reports/mine" not in url:
            raise RuntimeError("submit refused")

    def search(self, _serial):
        page = self.get("/cases?" + urllib.parse.urlencode({"q": self.rng.choice(QUERIES)}))
        self.case_ids = [int(i) for i in re.findall(r'href="/cases/(\d+)"', page)][:20] or self.case_ids

    def read(self, serial):
        if not self.case_ids:
            return self.search(serial)
        self.get(f"/cases/{self.rng.choice(self.case_ids)}")

    def approve(self, serial):
        """A manager approves the oldest report of the department waiting for it."""
        return self._decide("submitted", "approve", "承認しました", serial)

    def publish(self, serial):
        """The reviewer publishes the oldest approved report."""
        return self._decide("approved", "publish", "公開しました", serial)

    def _decide(self, queue, step, done, serial):
        listed = re.search(r'href="/cases/(\d+)"', self.get(f"/reports/queue/{queue}"))
        if not listed:
            return IDLE
        case_id = int(listed.group(1))
        page = self.get(f"/cases/{case_id}")
        form = re.search(r'name="version" value="(\d+)">\s*<div class="field"><label for="workflow-comment"',
                         page)
        _, answer = self.post(f"/reports/{case_id}/{step}", {
            "csrf_token": self.token(page), "version": form.group(1) if form else ""})
        if done not in answer:
            raise RuntimeError(f"{step} refused")

    def actions(self):
        return ACTIONS + tuple((duty, DUTY_WEIGHT) for duty in self.duties)


ACTIONS = (("file", 25), ("edit", 15), ("submit", 10), ("search", 35), ("read", 15))
DUTY_WEIGHT = 40  # how often a manager approves, or the reviewer publishes, among the above
IDLE = "nothing to do"  # an empty queue: looked at, not timed as a step
ROLE_OF_DUTY = {"approve": "manager", "publish": "reviewer"}


def duties(n, count):
    """The first user of each department is its manager; the last user is the reviewer."""
    return (("approve",) if n < len(DEPARTMENTS) else ()) + (("publish",) if n == count - 1 else ())


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_memory_mb(pid):
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024
    except (OSError, AttributeError):
        return float("nan")


def start_server(data_dir):
    """`flask serve` on a free loopback port for ``data_dir``, once it answers: (the
    process, its base URL, the path of its log, its environment). The caller terminates it."""
    port = free_port()
    env = dict(os.environ, KB_DATA_DIR=data_dir, KB_SECRET_KEY="load-test-secret",
               KB_PORT=str(port), KB_LOGIN_RATE_LIMIT="100000 per minute",
               KB_THREADS=os.environ.get("KB_THREADS", "8"))
    log_path = Path(data_dir) / "server.log"
    with log_path.open("w") as log_file:  # the child keeps its own copy of the descriptor
        server = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "serve"],
                                  cwd=ROOT, env=env, stdout=log_file, stderr=log_file)
    base = f"http://127.0.0.1:{port}"
    for _ in range(150):
        try:
            urllib.request.urlopen(base + "/login", timeout=1)
            break
        except OSError:
            time.sleep(0.2)
    return server, base, log_path, env


def not_found_by_search(data_dir, acknowledged):
    """How many reports were published, and the acknowledged reports that a search for
    their serial number misses: published ones searched as any member of staff, the
    others as their reporter (the only one who may see a draft)."""
    app = create_app({"TESTING": True, "DATA_DIR": data_dir, "SECRET_KEY": "load"})
    published, missing = 0, []
    with app.app_context():
        db = get_db()
        ix = search.get_index(data_dir)
        for case_id, status, reporter_id in db.execute(
                "SELECT case_id, status, reporter_id FROM cases WHERE origin = 'internal'"):
            if case_id not in acknowledged:
                continue
            published += status == "published"
            user = users.READER if status == "published" else users.get_user(db, reporter_id)
            serial = re.search(r"負荷試験 (\d+)", acknowledged[case_id]).group(1)
            result = search.search_cases(ix, db, user, f"負荷試験 {serial}", page_size=50)
            if case_id not in {hit["case_id"] for hit in result.hits}:
                missing.append(case_id)
    return published, missing


def cpu_seconds(pid):
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--think", type=float, default=2,
                        help="mean pause in seconds before each of a user's steps"
                             " (0: none, a saturation test)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as data_dir:
        app = create_app({"TESTING": True, "DATA_DIR": data_dir, "SECRET_KEY": "load"})
        app.test_cli_runner().invoke(args=["init"])
        with app.app_context():
            db = get_db()
            for n in range(args.users):
                department = users.get_department_by_code(db, DEPARTMENTS[n % len(DEPARTMENTS)])
                roles = ["staff"] + [ROLE_OF_DUTY[duty] for duty in duties(n, args.users)]
                users.create_user(db, users.SYSTEM, login=f"load{n:03d}", display_name=f"負荷{n}",
                                  department_id=department["department_id"], roles=roles,
                                  password=PASSWORD)
        server, base, log_path, env = start_server(data_dir)
        people = [User(base, f"load{n:03d}", random.Random(n), duties(n, args.users))
                  for n in range(args.users)]

        timings: dict[str, list[float]] = defaultdict(list)
        errors: Counter = Counter()
        lock = threading.Lock()
        deadline = time.time() + args.seconds

        def work(person, offset):
            serial = offset
            names, weights = zip(*person.actions())
            while time.time() < deadline:
                if args.think:  # before each step, so that users do not all start at once
                    pause = min(person.rng.expovariate(1 / args.think), 10 * args.think)
                    time.sleep(max(0.0, min(pause, deadline - time.time())))
                    if time.time() >= deadline:
                        break
                action = person.rng.choices(names, weights)[0]
                started = time.perf_counter()
                try:
                    outcome = getattr(person, action)(serial)
                except urllib.error.HTTPError as exc:
                    with lock:
                        errors[f"{action}: HTTP {exc.code}"] += 1
                except Exception as exc:  # noqa: BLE001 - counted and reported
                    with lock:
                        errors[f"{action}: {type(exc).__name__}"] += 1
                else:
                    if outcome is not IDLE:
                        with lock:
                            timings[action].append((time.perf_counter() - started) * 1000)
                serial += args.users

        started = time.time()
        threads = [threading.Thread(target=work, args=(p, i)) for i, p in enumerate(people)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.time() - started
        memory = peak_memory_mb(server.pid)
        cpu = cpu_seconds(server.pid)
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        server_log = log_path.read_text()
        server_errors = [line for line in server_log.splitlines()
                         if "Error" in line or "Exception" in line][:10]
        if os.environ.get("KB_BENCH_LOG"):
            Path(os.environ["KB_BENCH_LOG"]).write_text(server_log)

        acknowledged = {k: v for p in people for k, v in p.acknowledged.items()}
        with sqlite3.connect(database_path(data_dir)) as conn:
            stored = dict(conn.execute("SELECT case_id, summary FROM cases WHERE origin = 'internal'"))
            duplicates = conn.execute(
                "SELECT count(*) FROM (SELECT summary FROM cases WHERE origin = 'internal'"
                " GROUP BY summary HAVING count(*) > 1)").fetchone()[0]
            integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        pending = {k: v for p in people for k, v in p.pending.items()}
        lost = [case_id for case_id, summary in acknowledged.items()
                if stored.get(case_id) not in (summary, pending.get(case_id))]
        check = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "reindex", "--check"],
                               cwd=ROOT, env=env, capture_output=True, text=True)
        published, unfound = not_found_by_search(data_dir, acknowledged)

    total = sum(len(v) for v in timings.values())
    pace = f"pausing {args.think:g} s on average between steps" if args.think else "without pauses"
    print(f"{args.users} users for {elapsed:.0f} s, {pace}: {total} actions,"
          f" {total / elapsed:.1f} actions/s")
    requests = defaultdict(list)
    for person in people:
        for label, values in person.requests.items():
            requests[label] += values
    rows = [(f"{name} (whole step)", timings[name])
            for name, _ in ACTIONS + tuple((duty, 0) for duty in ROLE_OF_DUTY)]
    rows += [(f"{label} POST alone", requests[label]) for label in ("save", "submit")]
    for name, values in rows:
        print(f"  {name:<20} n={len(values):>5}  p50 {percentile(values, .5):6.1f} ms"
              f"  p95 {percentile(values, .95):6.1f} ms  p99 {percentile(values, .99):6.1f} ms")
    print(f"errors: {dict(errors) or 'none'}")
    print(f"server peak memory: {memory:.0f} MB; server CPU {cpu:.1f} s"
          f" ({cpu / elapsed:.0%} of one core)")
    for line in server_errors:
        print(f"  server log: {line}")
    print(f"acknowledged reports: {len(acknowledged)}; lost or changed: {len(lost)};"
          f" duplicated: {duplicates}; integrity: {integrity}")
    print(f"search: {len(acknowledged) - len(unfound)} of {len(acknowledged)} acknowledged reports"
          f" found ({published} published during the run, searched as another member of staff)")
    print(f"reindex --check: exit {check.returncode} ({check.stdout.strip().splitlines()[-1] if check.stdout.strip() else ''})")
    failed = lost or duplicates or integrity != "ok" or check.returncode != 0 or unfound or \
        any("HTTP 5" in key for key in errors)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
