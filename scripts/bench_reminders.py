#!/usr/bin/env python
"""自己点検 reminders and paper: what the scheduler's reminder job and the 所属長's pages cost
for a whole office.

Builds a throwaway data folder with `init`, imports a generated roster of N people (the
generator of scripts/bench_staff.py: everyone with an address, 課長 and 部長 are 所属長),
opens a whole-office campaign closing three days from now (a reminder day) and times, with
a fifth of the people done: the job that keeps open campaigns in step with the roster
(nothing changed; then 100 people the stored eligibility misses, as late joiners nobody
told it about), the reminder job's first run (a reminder per person not done
and a digest per 所属長, queued in one transaction per campaign), a second run the same day
(nothing new: reads only), the 所属長's page of the largest 課, its answer sheets (attempts
made for everyone not done) and keying one sheet in. Prints numbers; asserts nothing.

    .venv/bin/python scripts/bench_reminders.py [--people 3500] [--seed 12]
"""

import argparse
import json
import random
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_staff import roster_office  # noqa: E402
from kb import campaigns, dates, enrolment, paper, participation, reminders, selfcheck, users  # noqa: E402
from kb import create_app  # noqa: E402
from kb.db import get_db, transaction  # noqa: E402


def timed(call):
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=3500)
    parser.add_argument("--seed", type=int, default=12)
    options = parser.parse_args()
    rng = random.Random(options.seed)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        app = roster_office(folder, options.people, rng)
        with app.app_context():
            db = get_db()
            reviewer = users.create_user(
                db, users.SYSTEM, login="bench-reviewer", display_name="計測 情報管理担当",
                department_id=users.get_department_by_code(db, "soumu-gyousei-joho")["department_id"],
                roles=["reviewer"], password="bench-password-123")
            today = dates.office_today()
            campaign_id = campaigns.create_campaign(
                db, reviewer, title="計測用 自己点検", opens_at=f"{today - timedelta(days=7)}T00:00",
                closes_at=f"{today + timedelta(days=3)}T17:00", whole_office=True, department_ids=[],
                questions_per_person="10", pass_mark="8", retakes="until_passed")
            campaigns.generate_questions(db, reviewer, campaign_id, section_codes=["3", "4", "7"],
                                         version=participation.campaign_row(db, campaign_id)["version"])
            campaigns.open_campaign(db, reviewer, campaign_id)
            eligible = [row[0] for row in db.execute(
                "SELECT user_id FROM campaign_eligibility WHERE campaign_id = ? AND eligible = 1",
                [campaign_id])]
            for user_id in rng.sample(eligible, len(eligible) // 5):
                person = users.get_user(db, user_id)
                attempt_id = selfcheck.start_attempt(db, person, campaign_id)
                for position in range(1, 11):
                    selfcheck.answer_question(db, person, campaign_id, attempt_id, position,
                                              rng.random() < 0.8)
            managers = db.execute("SELECT count(*) FROM user_roles WHERE role = 'manager'").fetchone()[0]
            now = dates.office_now()
            result, steady = timed(lambda: enrolment.refresh_open_campaigns(db, app.config, now))
            print(f"eligibility job, nothing changed: {steady * 1000:.0f} ms — {result}"
                  f" ({len(eligible):,} eligible)")
            late = rng.sample(eligible, 100)
            with transaction(db):  # as if they had joined after opening unnoticed
                db.execute("DELETE FROM campaign_eligibility WHERE campaign_id = ? AND user_id IN"
                           " (SELECT value FROM json_each(?))", [campaign_id, json.dumps(late)])
                db.execute("DELETE FROM outbox WHERE dedupe_key IN (SELECT 'invite:' || ? || ':'"
                           " || value FROM json_each(?))", [campaign_id, json.dumps(late)])
            result, catching_up = timed(lambda: enrolment.refresh_open_campaigns(db, app.config, now))
            print(f"eligibility job, 100 late joiners: {catching_up * 1000:.0f} ms — {result}")
            counts, first = timed(lambda: reminders.queue_reminders(db, app.config, now))
            print(f"reminder job, first run: {first:.2f} s — {counts['reminders']:,} reminders and"
                  f" {counts['digests']:,} digests queued ({len(eligible):,} eligible,"
                  f" {managers} 所属長)")
            again, second = timed(lambda: reminders.queue_reminders(
                db, app.config, now + timedelta(minutes=1)))
            print(f"reminder job, again the same day: {second * 1000:.0f} ms — {again}")
            biggest, size = db.execute(
                "SELECT department_id, count(*) FROM campaign_eligibility WHERE campaign_id = ?"
                " AND eligible = 1 GROUP BY department_id ORDER BY 2 DESC LIMIT 1",
                [campaign_id]).fetchone()
            manager = users.get_user(db, db.execute(
                "SELECT u.user_id FROM users u JOIN user_roles r USING (user_id)"
                " WHERE r.role = 'manager' AND u.department_id = ? LIMIT 1", [biggest]).fetchone()[0]) \
                if db.execute("SELECT 1 FROM users u JOIN user_roles r USING (user_id) WHERE"
                              " r.role = 'manager' AND u.department_id = ?", [biggest]).fetchone() \
                else reviewer
            status, page = timed(lambda: participation.department_status(
                db, manager, campaign_id, biggest))
            _, rates = timed(lambda: participation.item_rates(db, manager, campaign_id, biggest))
            print(f"所属長's page data, largest 課 ({size} eligible, {len(status['not_yet'])} not done):"
                  f" status {page * 1000:.0f} ms, item rates {rates * 1000:.0f} ms")
            sheets, printing = timed(lambda: paper.answer_sheets(db, manager, campaign_id, biggest))
            print(f"answer sheets of that 課, attempts made: {printing * 1000:.0f} ms for"
                  f" {len(sheets['sheets'])} sheets")
            _, reprint = timed(lambda: paper.answer_sheets(db, manager, campaign_id, biggest))
            print(f"the same sheets again (nothing to make): {reprint * 1000:.0f} ms")
            sheet = sheets["sheets"][0]
            _, keying = timed(lambda: paper.key_in_sheet(
                db, manager, campaign_id, sheet["person"]["user_id"], sheet["attempt_id"],
                {q["question_id"]: "1" for q in sheet["questions"]}))
            print(f"key one sheet in (10 answers, scored, audited): {keying * 1000:.0f} ms")


if __name__ == "__main__":
    main()
