#!/usr/bin/env python
"""自己点検 opened before its opening time: what the scheduler's invitation job costs.

Builds a throwaway data folder with `init`, imports a generated roster of N people (the
generator of scripts/bench_staff.py: everyone with an address), opens a whole-office
campaign the day before its opening time and times: the opening (eligibility written, no
invitation), the `campaign_invitations` job before the opening time (nothing to do), at the
opening time (every invitation queued, one transaction), and a minute later (everyone
invited: reads only — what it costs every minute until the campaign closes); and the
`campaign_eligibility` job before the opening time. Prints numbers; asserts nothing.

    .venv/bin/python scripts/bench_campaign_start.py [--people 3500] [--seed 12]
"""

import argparse
import random
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_reminders import timed  # noqa: E402
from bench_staff import roster_office  # noqa: E402
from kb import campaigns, dates, enrolment, participation, users  # noqa: E402
from kb.db import get_db  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=3500)
    parser.add_argument("--seed", type=int, default=12)
    options = parser.parse_args()
    rng = random.Random(options.seed)
    with tempfile.TemporaryDirectory() as folder:
        app = roster_office(Path(folder), options.people, rng)
        with app.app_context():
            db = get_db()
            reviewer = users.create_user(
                db, users.SYSTEM, login="bench-reviewer", display_name="計測 情報管理担当",
                department_id=users.get_department_by_code(db, "soumu-gyousei-joho")["department_id"],
                roles=["reviewer"], password="bench-password-123")
            today = dates.office_today()
            starts = datetime.combine(today + timedelta(days=1), datetime.min.time().replace(hour=9),
                                      tzinfo=dates.OFFICE_TZ)
            campaign_id = campaigns.create_campaign(
                db, reviewer, title="計測用 自己点検", opens_at=starts.strftime(campaigns.TIME_FORMAT),
                closes_at=f"{today + timedelta(days=14)}T17:00", whole_office=True, department_ids=[],
                questions_per_person="10", pass_mark="8", retakes="until_passed")
            campaigns.generate_questions(db, reviewer, campaign_id, section_codes=["3", "4", "7"],
                                         version=participation.campaign_row(db, campaign_id)["version"])
            before = starts - timedelta(hours=12)
            invited, opening = timed(lambda: campaigns.open_campaign(
                db, reviewer, campaign_id, now=before.strftime(campaigns.TIME_FORMAT)))
            eligible = db.execute("SELECT count(*) FROM campaign_eligibility WHERE campaign_id = ?"
                                  " AND eligible = 1", [campaign_id]).fetchone()[0]
            print(f"opening the day before ({eligible:,} eligible): {opening:.2f} s — invitations {invited}")
            result, waiting = timed(lambda: campaigns.invite_started_campaigns(db, app.config, before))
            print(f"invitation job before the opening time: {waiting * 1000:.1f} ms — {result}")
            result, refresh = timed(lambda: enrolment.refresh_open_campaigns(db, app.config, before))
            print(f"eligibility job before the opening time: {refresh * 1000:.0f} ms — {result}")
            result, first = timed(lambda: campaigns.invite_started_campaigns(db, app.config, starts))
            print(f"invitation job at the opening time: {first:.2f} s — {result}")
            for minute in (1, 2, 3):
                result, again = timed(lambda: campaigns.invite_started_campaigns(
                    db, app.config, starts + timedelta(minutes=minute)))
                print(f"invitation job {minute} min later (everyone invited): {again * 1000:.1f} ms — {result}")


if __name__ == "__main__":
    main()
