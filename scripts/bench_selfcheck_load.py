#!/usr/bin/env python
"""Load test of 自己点検: N members of staff answering at once on the real server, then a
check that no answer was lost or recorded twice.

It starts `flask --app wsgi serve` (waitress) on a free loopback port with a throwaway,
seeded data folder, creates N accounts with passwords through the core, opens a
whole-office campaign with every checklist item as a question, and for a fixed time each
person signs in, starts, and answers one question after another as a browser does (the
answer, then 「次の問題へ」), pausing before each answer (exponential, mean --think seconds,
default 3). One answer in ten is sent twice (a double click). Requests go only to
127.0.0.1; the run stops by itself. It prints p50/p95/max per step (the answer POST,
whose response says whether it was right; the next question's page), the server's
CPU time and peak memory, errors by type, and the answers acknowledged by the server
that are missing from the database (lost) or stored more than once (duplicated).

    .venv/bin/python scripts/bench_selfcheck_load.py [--users 200] [--seconds 60] [--think 3]
"""

import argparse
import http.cookiejar
import json
import os
import random
import re
import sqlite3
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter, defaultdict
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_load import (NoRedirect, cpu_seconds, peak_memory_mb, percentile,  # noqa: E402
                        start_server)
from kb import campaigns, checklist, create_app, dates, users  # noqa: E402
from kb.db import database_path, get_db  # noqa: E402

PASSWORD = "load-test-password"
DEPARTMENTS = ("kumin-koseki", "kumin-kazei", "fukushi-kourei", "kodomo-hoiku", "kenkou-suishin",
               "soumu-jinji")


class Person:
    def __init__(self, base, login, rng):
        self.base, self.login, self.rng = base, login, rng
        cookies = urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        self.opener = urllib.request.build_opener(cookies)
        self.raw = urllib.request.build_opener(cookies, NoRedirect)
        self.timings: dict[str, list[float]] = defaultdict(list)
        self.acknowledged: set[tuple[int, int]] = set()  # (attempt, position)

    def request(self, path, data=None, label=None, follow=True):
        started = time.perf_counter()
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        opener = self.opener if follow else self.raw
        try:
            with opener.open(self.base + path, body, timeout=30) as response:
                result = response.geturl(), response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            if follow or exc.code not in (302, 303):
                raise
            result = exc.headers["Location"], exc.code, ""
        if label:
            self.timings[label].append((time.perf_counter() - started) * 1000)
        return result

    @staticmethod
    def token(page):
        return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)

    def sign_in(self):
        _, _, page = self.request("/login")
        self.request("/login", {"csrf_token": self.token(page), "login": self.login,
                                "password": PASSWORD}, label="sign in")

    def start(self, campaign_id):
        _, _, page = self.request(f"/selfcheck/{campaign_id}", label="campaign page")
        url, _, page = self.request(f"/selfcheck/{campaign_id}/start",
                                    {"csrf_token": self.token(page)}, label="start")
        match = re.search(r"/attempts/(\d+)/(\d+)$", url)
        return (int(match.group(1)), int(match.group(2)), page) if match else (None, None, page)

    def answer(self, campaign_id, attempt_id, position, page):
        """What a browser does: POST one answer (its response is the page that says
        whether it was right), sometimes twice (a double click); then 「次の問題へ」, the
        next question's page. Returns (the next position or None, that page)."""
        path = f"/selfcheck/{campaign_id}/attempts/{attempt_id}/{position}"
        data = {"csrf_token": self.token(page), "answer": self.rng.choice("10")}
        _, status, shown = self.request(path, data, label="answer (POST)")
        if status == 200 and "selfcheck-feedback" in shown:
            self.acknowledged.add((attempt_id, position))
        if self.rng.random() < 0.1:
            self.request(path, data, label="answer again (double click)")
        go = re.search(r'selfcheck-go" href="([^"]+)"', shown).group(1)
        if go.endswith("/result"):
            self.request(go, label="result page")
            return None, ""
        _, _, page = self.request(go, label="next question")
        return int(go.rsplit("/", 1)[1]), page


def cpu_stolen() -> float:
    """Seconds of CPU the hypervisor gave to other machines so far (Linux /proc/stat), 0
    where unknown."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--think", type=float, default=3, help="mean pause before each answer")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as data_dir:
        app = create_app({"TESTING": True, "DATA_DIR": data_dir, "SECRET_KEY": "load"})
        app.test_cli_runner().invoke(args=["init"])
        with app.app_context():
            db = get_db()
            author = users.create_user(
                db, users.SYSTEM, login="load-author", display_name="作成者", roles=["reviewer"],
                department_id=users.get_department_by_code(db, "soumu-gyousei-joho")["department_id"],
                password=PASSWORD)
            for n in range(args.users):
                department = users.get_department_by_code(db, DEPARTMENTS[n % len(DEPARTMENTS)])
                users.create_user(db, users.SYSTEM, login=f"answer{n:03d}", display_name=f"負荷{n}",
                                  department_id=department["department_id"], roles=["staff"],
                                  password=PASSWORD)
            today = dates.office_today()
            campaign_id = campaigns.create_campaign(
                db, author, title="負荷試験", opens_at=f"{today - timedelta(days=1)}T09:00",
                closes_at=f"{today + timedelta(days=7)}T17:00", whole_office=True,
                department_ids=[], questions_per_person="", pass_mark="0", retakes="until_passed")
            sections = [s["code"] for s in checklist.current_sections(db)]
            version = campaigns.get_campaign(db, author, campaign_id)["version"]
            asked = campaigns.generate_questions(db, author, campaign_id, section_codes=sections,
                                                 version=version)
            campaigns.open_campaign(db, author, campaign_id)
        server, base, _, env = start_server(data_dir)
        people = [Person(base, f"answer{n:03d}", random.Random(n)) for n in range(args.users)]
        errors: Counter = Counter()
        lock = threading.Lock()
        ready = {}

        def arrive(person):
            # Before the timed window: 200 sign-ins at once are a password-hashing storm,
            # not the answering this measures.
            try:
                person.sign_in()
                ready[person.login] = person.start(campaign_id)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                with lock:
                    errors[f"arrive {type(exc).__name__}: {getattr(exc, 'code', '')}"] += 1

        for batch in range(0, len(people), 8):
            group = [threading.Thread(target=arrive, args=(p,)) for p in people[batch:batch + 8]]
            for thread in group:
                thread.start()
            for thread in group:
                thread.join()
        cpu_before = cpu_seconds(server.pid)
        deadline = time.time() + args.seconds

        def work(person):
            attempt_id, position, page = ready.get(person.login, (None, None, ""))
            try:
                while attempt_id and position and time.time() < deadline:
                    time.sleep(max(0.0, min(person.rng.expovariate(1 / args.think) if args.think else 0,
                                            deadline - time.time())))
                    if time.time() >= deadline:
                        break
                    position, page = person.answer(campaign_id, attempt_id, position, page)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                with lock:
                    errors[f"{type(exc).__name__}: {getattr(exc, 'code', '')}"] += 1

        started, client_cpu, stolen = time.time(), time.process_time(), cpu_stolen()
        threads = [threading.Thread(target=work, args=(p,)) for p in people]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed, client_cpu = time.time() - started, time.process_time() - client_cpu
        stolen = cpu_stolen() - stolen
        cpu = cpu_seconds(server.pid) - cpu_before
        memory = peak_memory_mb(server.pid)
        server.terminate()
        server.wait(timeout=30)

        conn = sqlite3.connect(database_path(data_dir))
        positions = {}  # (attempt, question id) → its position in the attempt
        for attempt_id, ids in conn.execute("SELECT attempt_id, question_ids FROM campaign_attempts"):
            for n, question_id in enumerate(json.loads(ids), start=1):
                positions[(attempt_id, question_id)] = n
        recorded = Counter()
        for attempt_id, question_id in conn.execute(
                "SELECT attempt_id, question_id FROM campaign_answers"):
            recorded[(attempt_id, positions[(attempt_id, question_id)])] += 1
        acknowledged = set().union(*(p.acknowledged for p in people))
        lost = len(acknowledged - set(recorded))
        duplicated = sum(n - 1 for n in recorded.values() if n > 1)

        timings = defaultdict(list)
        for person in people:
            for label, values in person.timings.items():
                timings[label].extend(values)
        answers = len(timings["answer (POST)"])
        print(f"{args.users} people, {elapsed:.0f} s, mean pause {args.think} s, "
              f"{asked} questions each, server threads {env['KB_THREADS']}")
        print(f"answers: {answers} ({answers / elapsed:.1f}/s)")
        print(f"{'step':<30}{'n':>7}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}")
        for label in ("sign in", "campaign page", "start", "answer (POST)",
                      "answer again (double click)", "next question", "result page"):
            values = timings.get(label, [])
            print(f"{label:<30}{len(values):>7}{percentile(values, .5):>9.0f}"
                  f"{percentile(values, .95):>9.0f}{max(values, default=0):>9.0f}")
        window = sum(len(timings[label]) for label in (
            "answer (POST)", "answer again (double click)", "next question", "result page"))
        print(f"server CPU in the answering window: {cpu:.1f} s over {elapsed:.0f} s"
              f" ({100 * cpu / elapsed:.0f} % of one core), {1000 * cpu / max(1, window):.1f} ms per request;"
              f" peak memory {memory:.0f} MB")
        # The 200 clients run here too: their CPU competes with the server's on this machine.
        print(f"this client's CPU: {client_cpu:.1f} s ({100 * client_cpu / elapsed:.0f} % of one core);"
              f" load average at the end {os.getloadavg()[0]:.1f}")
        if stolen:  # a virtual machine whose host gave the time to others: the numbers are not this code's
            print(f"CPU time stolen by the host: {stolen:.1f} s of {os.cpu_count()} × {elapsed:.0f} s"
                  f" ({100 * stolen / (os.cpu_count() * elapsed):.0f} %)")
        print(f"errors: {dict(errors) or 0}")
        print(f"acknowledged answers: {len(acknowledged)}, lost: {lost}, duplicated: {duplicated}")


if __name__ == "__main__":
    main()
