#!/usr/bin/env python
"""自己点検 speed: opening a whole-office campaign for 3,500 people, and answering.

Builds a throwaway data folder with `init`, imports a generated roster of N people (the
generator of scripts/bench_staff.py: about 6 % on leave, a few 退職, everyone with an
e-mail address), makes a whole-office campaign from three checklist sections and times
`kb.campaigns.open_campaign` — eligibility of everyone, written in bulk, and one
invitation queued in the outbox per eligible person with an address, in one transaction
(target: ≤ 10 s). Then times the live figures (`campaign-report`), the banner query, and
answering: N people each answer a 10-question attempt through the Flask test client
(server time of one POST, CSRF and session included; target: ≤ 50 ms), and closing
(freezing) the campaign.

    .venv/bin/python scripts/bench_campaign.py [--people 3500] [--answerers 20] [--seed 12]
"""

import argparse
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_staff import roster_office  # noqa: E402
from kb import campaigns, participation, selfcheck, users  # noqa: E402
from kb import create_app  # noqa: E402
from kb.db import get_db  # noqa: E402

PASSWORD = "bench-password-123"


def _p95(times: list[float]) -> float:
    return sorted(times)[max(0, round(len(times) * 0.95) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=3500)
    parser.add_argument("--answerers", type=int, default=20)
    parser.add_argument("--seed", type=int, default=12)
    options = parser.parse_args()
    rng = random.Random(options.seed)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        app = roster_office(folder, options.people, rng)
        with app.app_context():
            db = get_db()
            department = users.get_department_by_code(db, "soumu-gyousei-joho")["department_id"]
            reviewer = users.create_user(db, users.SYSTEM, login="bench-reviewer",
                                         display_name="計測 情報管理担当", department_id=department,
                                         roles=["reviewer"], password=PASSWORD)
            today = time.strftime("%Y-%m-%d")
            campaign_id = campaigns.create_campaign(
                db, reviewer, title="計測用 自己点検", opens_at=f"{today}T00:00",
                closes_at="2099-12-15T17:00", whole_office=True, department_ids=[],
                questions_per_person="10", pass_mark="8", retakes="until_passed")
            campaigns.generate_questions(
                db, reviewer, campaign_id, section_codes=["3", "4", "7"],
                version=participation.campaign_row(db, campaign_id)["version"])
            started = time.perf_counter()
            invited = campaigns.open_campaign(db, reviewer, campaign_id)
            opening = time.perf_counter() - started
            eligible = db.execute("SELECT count(*) FROM campaign_eligibility WHERE campaign_id = ?"
                                  " AND eligible = 1", [campaign_id]).fetchone()[0]
            print(f"open a whole-office campaign: {opening:.2f} s for {options.people:,} roster people"
                  f" ({eligible:,} eligible, {invited:,} invitations queued; target <= 10 s:"
                  f" {'met' if opening <= 10 else 'NOT met'})")
            started = time.perf_counter()
            report = participation.campaign_report(db, campaign_id)
            print(f"live figures (campaign-report): {(time.perf_counter() - started) * 1000:.0f} ms"
                  f" for {len(report['departments'])} departments")
            people = [row[0] for row in db.execute(
                "SELECT e.user_id FROM campaign_eligibility e JOIN users u USING (user_id)"
                " WHERE e.campaign_id = ? AND e.eligible = 1 AND u.source = 'roster'"
                " ORDER BY e.user_id LIMIT ?", [campaign_id, options.answerers])]
            banner = []
            for user_id in people:
                user = users.get_user(db, user_id)
                started = time.perf_counter()
                selfcheck.banner(db, user)
                banner.append((time.perf_counter() - started) * 1000)
            print(f"banner query: p50 {statistics.median(banner):.2f} ms, max {max(banner):.2f} ms")
            for user_id in people:  # roster accounts have no password until one is set
                users.store_password(db, user_id, PASSWORD)
            logins = [users.get_user(db, user_id).login for user_id in people]
        times = []
        for login_id in logins:
            client = app.test_client()
            token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"',
                              client.get("/login").get_data(as_text=True)).group(1)
            client.post("/login", data={"csrf_token": token, "login": login_id, "password": PASSWORD})
            token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', client.get(
                f"/selfcheck/{campaign_id}").get_data(as_text=True)).group(1)
            response = client.post(f"/selfcheck/{campaign_id}/start", data={"csrf_token": token})
            attempt = response.headers["Location"]
            base = re.search(r"(/selfcheck/\d+/attempts/\d+)", attempt).group(1)
            for position in range(1, 11):
                started = time.perf_counter()
                response = client.post(f"{base}/{position}", data={"csrf_token": token,
                                                                  "answer": rng.choice("01")})
                times.append((time.perf_counter() - started) * 1000)
                if response.status_code != 302:
                    sys.exit(f"answer: HTTP {response.status_code}")
        print(f"answering one question (POST, {len(times)} answers by {len(logins)} people):"
              f" p50 {statistics.median(times):.1f} ms, p95 {_p95(times):.1f} ms,"
              f" max {max(times):.1f} ms (target <= 50 ms: {'met' if _p95(times) <= 50 else 'NOT met'})")
        with app.app_context():
            db = get_db()
            core = []
            for user_id in people:  # a second attempt each, through the core call alone
                user = users.get_user(db, user_id)
                db.execute("UPDATE campaign_attempts SET passed = 0 WHERE user_id = ?", [user_id])
                db.conn.commit()
                attempt_id = selfcheck.start_attempt(db, user, campaign_id)
                for position in range(1, 11):
                    started = time.perf_counter()
                    selfcheck.answer_question(db, user, campaign_id, attempt_id, position,
                                              rng.choice("01"))
                    core.append((time.perf_counter() - started) * 1000)
            print(f"answer_question alone (the core call, its transaction and fsync):"
                  f" p50 {statistics.median(core):.1f} ms, p95 {_p95(core):.1f} ms")
            started = time.perf_counter()
            campaigns.close_campaign(db, reviewer, campaign_id)
            print(f"close (freeze {options.people:,} people): {time.perf_counter() - started:.2f} s")
            print(f"figures after closing: {participation.campaign_report(db, campaign_id)['total']}")


if __name__ == "__main__":
    main()
