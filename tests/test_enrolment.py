"""自己点検 after opening (issue #13): people who join the target later are addressed and
invited once, people who leave it lose the banner, and the demo roster is never mailed.
Through the real importer, the real scheduler and a real SMTP server on loopback."""

import pytest

from kb import campaigns, dates, demo_campaigns, demo_roster, enrolment, selfcheck, staff, users
from kb.db import get_db, transaction
from tests.conftest import login
from tests.test_campaigns import LONG_AGO, TODAY, load_roster, make_campaign
from tests.test_selfcheck_manager import (KOSEKI, open_at_now, own_db, received,  # noqa: F401
                                          reviewer, run, smtp, use_smtp)
from tests.test_staff import MANAGERS

INVITATION = "自己点検のお願い"


def banner_for(db, user_id):
    found = selfcheck.banner(db, users.get_user(db, user_id))
    return found and found["campaign_id"]


def invitation_keys(db, campaign_id):
    return sorted(row[0] for row in db.execute(
        "SELECT dedupe_key FROM outbox WHERE dedupe_key LIKE ?", [f"invite:{campaign_id}:%"]))


def test_someone_the_roster_adds_after_opening_sees_the_banner_at_once_and_is_invited_once(
        app, own_db, smtp, reviewer):
    load_roster(own_db, [("6001", KOSEKI, "", "early@example.jp")])
    with app.app_context():
        campaign_id = make_campaign(get_db(), reviewer)
        open_at_now(get_db(), reviewer, campaign_id)
    late = load_roster(own_db, [("6001", KOSEKI, "", "early@example.jp"),
                                ("6002", KOSEKI, "", "late@example.jp")])["6002"]
    assert banner_for(own_db, late) == campaign_id  # the import itself brought it
    use_smtp(app, smtp)
    first = run(app)
    run(app, minutes=1)
    run(app, days_later=1)  # the next day: still one invitation each
    assert first["jobs"]["campaign_eligibility"] == {"changed": 0, "invited": 0}
    assert [to for to, _ in received(smtp, INVITATION)] == ["early@example.jp", "late@example.jp"]


def test_returning_or_moving_in_adds_people_and_a_leave_or_moving_out_drops_them(app, own_db,
                                                                                  reviewer):
    ids = load_roster(own_db, [("6101", KOSEKI, "育児休業", "back@example.jp"),
                               ("6102", "soumu-jinji", "", "in@example.jp"),
                               ("6103", KOSEKI, "", "leave@example.jp"),
                               ("6104", KOSEKI, "", "out@example.jp")])
    with app.app_context():
        campaign_id = make_campaign(get_db(), reviewer)
        open_at_now(get_db(), reviewer, campaign_id)
    assert [banner_for(own_db, ids[n]) for n in ("6101", "6102", "6103", "6104")] == \
        [None, None, campaign_id, campaign_id]
    # the roster: 6101 back from leave, 6102 moved into the target, 6104 moved out of it
    load_roster(own_db, [("6101", KOSEKI, "", "back@example.jp"),
                         ("6102", KOSEKI, "", "in@example.jp"),
                         ("6103", KOSEKI, "", "leave@example.jp"),
                         ("6104", "soumu-jinji", "", "out@example.jp")])
    # an admin records 6103's leave by hand
    staff.change_status(own_db, users.SYSTEM, ids["6103"], status="休職", starts_on=LONG_AGO,
                        reason="休職発令")
    assert [banner_for(own_db, ids[n]) for n in ("6101", "6102", "6103", "6104")] == \
        [campaign_id, campaign_id, None, None]
    assert invitation_keys(own_db, campaign_id) == sorted(
        f"invite:{campaign_id}:{ids[n]}" for n in ("6101", "6102", "6103", "6104"))
    # back again: the banner returns, the invitation is not sent a second time
    staff.change_status(own_db, users.SYSTEM, ids["6103"], status="在職", starts_on=LONG_AGO,
                        reason="復職")
    assert banner_for(own_db, ids["6103"]) == campaign_id
    assert len(invitation_keys(own_db, campaign_id)) == 4


def test_an_account_an_admin_creates_after_opening_gets_the_banner_and_loses_it_when_moved(
        app, client, own_db, reviewer, make_user):
    with app.app_context():
        campaign_id = make_campaign(get_db(), reviewer)
        open_at_now(get_db(), reviewer, campaign_id)
    newcomer = make_user("newcomer", department=KOSEKI)
    login(client, "newcomer")
    assert f'href="/selfcheck/{campaign_id}"' in client.get("/").get_data(as_text=True)
    with app.app_context():
        db = get_db()
        users.update_user(db, users.SYSTEM, newcomer.user_id, display_name=newcomer.display_name,
                          department_id=users.get_department_by_code(db, "soumu-jinji")["department_id"],
                          roles=newcomer.roles, active=True)
    assert "自己点検があります" not in client.get("/").get_data(as_text=True)


def test_the_job_brings_a_campaign_opened_before_it_existed_up_to_date(app, own_db, smtp,
                                                                       reviewer):
    ids = load_roster(own_db, [("6201", KOSEKI, "", "stays@example.jp"),
                               ("6202", KOSEKI, "", "joined@example.jp"),
                               ("6203", KOSEKI, "", "left@example.jp")])
    with app.app_context():
        campaign_id = make_campaign(get_db(), reviewer)
        open_at_now(get_db(), reviewer, campaign_id)
    with transaction(own_db):
        # What an earlier release, which wrote eligibility only at opening, left behind: 6202
        # joined later (no row, no invitation), 6203 moved away since (still addressed).
        own_db.execute("DELETE FROM campaign_eligibility WHERE user_id = ?", [ids["6202"]])
        own_db.execute("DELETE FROM outbox WHERE to_user_id = ?", [ids["6202"]])
        own_db.execute("UPDATE staff_assignments SET department_id = (SELECT department_id"
                       " FROM departments WHERE code = 'soumu-jinji') WHERE user_id = ?", [ids["6203"]])
    assert banner_for(own_db, ids["6202"]) is None and banner_for(own_db, ids["6203"]) == campaign_id
    use_smtp(app, smtp)
    first = run(app)
    assert first["jobs"]["campaign_eligibility"] == {"changed": 2, "invited": 1}
    assert banner_for(own_db, ids["6202"]) == campaign_id and banner_for(own_db, ids["6203"]) is None
    again = run(app, minutes=1)
    assert again["jobs"]["campaign_eligibility"] == {"changed": 0, "invited": 0}
    assert [to for to, _ in received(smtp, INVITATION)] == ["joined@example.jp", "left@example.jp",
                                                            "stays@example.jp"]
    # the closed campaign's rows are frozen: the job leaves them alone
    with app.app_context():
        campaigns.close_campaign(get_db(), reviewer, campaign_id)
    assert run(app, minutes=2)["jobs"]["campaign_eligibility"] == {"changed": 0, "invited": 0}


def test_demo_people_are_never_mailed_by_the_demo_campaigns_or_any_other(app, own_db, smtp,
                                                                         reviewer):
    with app.app_context():
        db = get_db()
        demo_roster.load_demo_roster(db, managers=MANAGERS, today=TODAY)
        made = demo_campaigns.load_demo_campaigns(db, reviewer.user_id, today=TODAY)
        campaign_id = make_campaign(db, reviewer, departments=())  # a reviewer trying it out
        open_at_now(db, reviewer, campaign_id)
    demo_people = own_db.execute("SELECT count(*) FROM users WHERE email LIKE ?",
                                 [f"%@{demo_roster.EMAIL_DOMAIN}"]).fetchone()[0]
    assert demo_people > 200 and made["open"]
    assert own_db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
    use_smtp(app, smtp)
    run(app)
    run(app, days_later=11)  # three days before the open demo campaign closes: reminder day
    assert own_db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
    assert smtp.received == []


def test_refreshing_people_outside_a_transaction_is_refused(own_db):
    with pytest.raises(RuntimeError):
        enrolment.refresh_people(own_db, [1])


def test_the_scheduler_runs_the_full_refresh_at_most_every_ten_minutes_on_the_clock(db):
    enrolment._last_refresh.clear()
    first = enrolment._refresh(db, {}, None)
    assert "skipped" not in first
    assert "skipped" in enrolment._refresh(db, {}, None)  # a minute later: not again
    # a given moment (tests, `send-mail` replays) always runs
    assert "skipped" not in enrolment._refresh(db, {}, dates.office_now())
