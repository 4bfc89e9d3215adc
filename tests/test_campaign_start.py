"""A 自己点検 opened before its opening time (issue #13): nobody is invited, shown the banner,
reminded or allowed to answer — online or on paper — until that time; then the scheduler
invites everyone addressed, once. Through the real importer, the real scheduler and a real
SMTP server on loopback, on the fixed clock of the mail tests (NOW)."""

import re
from datetime import timedelta

import pytest

from kb import campaigns, dates, paper, participation_charts, reminders, scheduler, selfcheck, users
from kb.db import get_db
from kb.exceptions import Invalid
from tests.conftest import csrf_token, login, make_app
from tests.test_campaigns import department_id, load_roster, make_campaign, version
from tests.test_selfcheck_manager import (KOSEKI, NOW, attempt_of, key_in_form,  # noqa: F401
                                          own_db, received, reviewer, set_email, smtp, use_smtp)

INVITATION = "自己点検のお願い"
# Opening time: tomorrow 09:00 on the fixed clock; the campaign is opened today at NOW (10:00).
STARTS = (NOW + timedelta(days=1)).replace(hour=9, minute=0)
CLOSES = f"{(NOW + timedelta(days=6)).date()}T17:00"


def local(moment) -> str:
    return moment.strftime(campaigns.TIME_FORMAT)


def run(app, moment):
    """The due work as the scheduler of `serve` (or `send-mail --once`) runs it at ``moment``."""
    return scheduler.run_due_work(app, moment)


def invitation_keys(db, campaign_id):
    return sorted(row[0] for row in db.execute(
        "SELECT dedupe_key FROM outbox WHERE kind = 'campaign_invitation' AND dedupe_key LIKE ?",
        [f"invite:{campaign_id}:%"]))


def open_early(app, reviewer, opens=STARTS):
    """A campaign for kumin-koseki opening at ``opens``, opened (frozen) at NOW."""
    with app.app_context():
        db = get_db()
        campaign_id = make_campaign(db, reviewer, opens=local(opens), closes=CLOSES, per_person="1")
        invited = campaigns.open_campaign(db, reviewer, campaign_id, version=version(db, campaign_id),
                                          now=local(NOW))
    return campaign_id, invited


def test_a_campaign_opened_before_its_start_invites_nobody_until_then_and_everyone_once(
        app, own_db, smtp, reviewer):
    ids = load_roster(own_db, [("7001", KOSEKI, "", "a@example.jp"),
                               ("7002", KOSEKI, "", "b@example.jp"),
                               ("7003", KOSEKI, "", "")])  # no address: paper
    campaign_id, invited = open_early(app, reviewer)
    assert invitation_keys(own_db, campaign_id) == []  # they wait for the opening time
    assert invited is None
    # someone the roster adds before the start is addressed, but not invited yet either
    late = load_roster(own_db, [("7001", KOSEKI, "", "a@example.jp"),
                                ("7002", KOSEKI, "", "b@example.jp"),
                                ("7003", KOSEKI, "", ""),
                                ("7004", KOSEKI, "", "late@example.jp")])["7004"]
    assert invitation_keys(own_db, campaign_id) == []

    use_smtp(app, smtp)
    before = run(app, NOW)
    run(app, STARTS - timedelta(minutes=1))
    assert before["jobs"]["campaign_invitations"] == {"invited": 0}
    assert before["jobs"]["campaign_eligibility"]["invited"] == 0
    assert received(smtp, INVITATION) == [] and invitation_keys(own_db, campaign_id) == []
    person = users.get_user(own_db, ids["7001"])
    assert selfcheck.banner(own_db, person, now=local(STARTS - timedelta(minutes=1))) is None
    with pytest.raises(Invalid) as refused:
        selfcheck.start_attempt(own_db, person, campaign_id, now=local(STARTS - timedelta(minutes=1)))
    assert refused.value.errors["start"] == [selfcheck.NOT_YET]

    at_start = run(app, STARTS)
    assert at_start["jobs"]["campaign_invitations"] == {"invited": 3}
    assert [to for to, _ in received(smtp, INVITATION)] == \
        ["a@example.jp", "b@example.jp", "late@example.jp"]
    assert selfcheck.banner(own_db, person, now=local(STARTS))["campaign_id"] == campaign_id
    # again a minute later, after a restart, the next day: nobody is invited twice
    again = run(app, STARTS + timedelta(minutes=1))
    restarted = use_smtp(make_app(app.config["DATA_DIR"]), smtp)
    run(restarted, STARTS + timedelta(minutes=2))
    run(restarted, STARTS + timedelta(days=1))
    assert again["jobs"]["campaign_invitations"] == {"invited": 0}
    assert len(received(smtp, INVITATION)) == 3
    assert invitation_keys(own_db, campaign_id) == sorted(
        f"invite:{campaign_id}:{user_id}" for user_id in (ids["7001"], ids["7002"], late))


def test_a_campaign_opened_at_its_opening_time_exactly_invites_at_once_and_only_once(
        app, own_db, smtp, reviewer):
    load_roster(own_db, [("7101", KOSEKI, "", "a@example.jp"),
                         ("7102", KOSEKI, "", "b@example.jp")])
    campaign_id, invited = open_early(app, reviewer, opens=NOW)
    assert invited == 2
    use_smtp(app, smtp)
    first = run(app, NOW)
    run(app, NOW + timedelta(minutes=1))
    assert first["jobs"]["campaign_invitations"] == {"invited": 0}  # the opening queued them
    assert [to for to, _ in received(smtp, INVITATION)] == ["a@example.jp", "b@example.jp"]
    assert len(invitation_keys(own_db, campaign_id)) == 2


def test_a_campaign_closed_before_its_invitations_were_due_sends_none(app, own_db, smtp, reviewer):
    load_roster(own_db, [("7201", KOSEKI, "", "a@example.jp")])
    campaign_id, _ = open_early(app, reviewer)
    campaigns.close_campaign(own_db, reviewer, campaign_id)
    use_smtp(app, smtp)
    assert run(app, STARTS)["jobs"]["campaign_invitations"] == {"invited": 0}
    assert received(smtp, INVITATION) == [] and invitation_keys(own_db, campaign_id) == []


def test_the_reviewer_is_told_the_invitations_wait_for_the_opening_time(app, client, reviewer):
    # The page reads the wall clock: an opening time two days ahead is ahead whatever the time.
    opens = f"{dates.office_today() + timedelta(days=2)}T09:00"
    with app.app_context():
        db = get_db()
        campaign_id = make_campaign(db, reviewer, opens=opens,
                                    closes=f"{dates.office_today() + timedelta(days=9)}T17:00")
    login(client, "rev")
    page = client.get(f"/campaigns/{campaign_id}").get_data(as_text=True)
    with app.app_context():
        current = version(get_db(), campaign_id)
    response = client.post(f"/campaigns/{campaign_id}/open",
                           data={"csrf_token": csrf_token(page), "version": current},
                           follow_redirects=True)
    html = response.get_data(as_text=True)
    assert "案内メールは開始日時になったら送ります" in html and "通を送信待ち" not in html
    assert f"開始日時（{opens.replace('T', ' ')}）の前です" in html


def test_a_paper_sheet_can_be_printed_before_the_start_but_not_keyed_in(app, client, own_db,
                                                                       reviewer, make_user):
    ids = load_roster(own_db, [("7301", KOSEKI, "", "")])
    make_user("boss", "manager", department=KOSEKI)
    opens = f"{dates.office_today() + timedelta(days=2)}T09:00"  # ahead of the wall clock
    with app.app_context():
        db = get_db()
        campaign_id = make_campaign(db, reviewer, opens=opens,
                                    closes=f"{dates.office_today() + timedelta(days=9)}T17:00")
        campaigns.open_campaign(db, reviewer, campaign_id, version=version(db, campaign_id))
        page = f"/selfcheck/manage/{campaign_id}/{department_id(db, KOSEKI)}"
    login(client, "boss")
    assert client.get(f"{page}/sheets").status_code == 200  # printed ahead, to hand out
    url = f"{page}/paper/{ids['7301']}"
    token, attempt_id, keys = key_in_form(client, url)
    response = client.post(url, data={"csrf_token": token, "attempt_id": attempt_id,
                                      **{key: "1" for key in keys}})
    assert response.status_code == 422
    text = response.get_data(as_text=True)
    assert re.search(r"開始日時（[^）]+）の前のため、用紙の回答はまだ入力できません", text)
    assert attempt_of(own_db, ids["7301"], campaign_id)["finished_at"] is None
    assert own_db.execute("SELECT count(*) FROM campaign_answers").fetchone()[0] == 0
    # at the opening time the same sheet is keyed in
    boss = users.get_user(own_db, own_db.execute("SELECT user_id FROM users WHERE login = 'boss'"
                                                 ).fetchone()[0])
    start = dates.in_office_time(campaigns._as_moment(opens))
    assert paper.key_in_sheet(own_db, boss, campaign_id, ids["7301"], int(attempt_id),
                              {key[1:]: "1" for key in keys}, now=start) == len(keys)


# --- attacked by a hostile or careless user (R13) -----------------------------------------------

def open_ahead_of_the_wall_clock(app, reviewer):
    """A campaign for kumin-koseki opening two days ahead of the wall clock (the pages read
    it), opened now; returns (campaign id, the 所属's page)."""
    opens = f"{dates.office_today() + timedelta(days=2)}T09:00"
    with app.app_context():
        db = get_db()
        campaign_id = make_campaign(db, reviewer, opens=opens,
                                    closes=f"{dates.office_today() + timedelta(days=9)}T17:00")
        campaigns.open_campaign(db, reviewer, campaign_id, version=version(db, campaign_id))
        return campaign_id, f"/selfcheck/manage/{campaign_id}/{department_id(db, KOSEKI)}"


def test_starting_before_the_opening_time_is_refused_even_when_a_printed_sheet_drew_the_attempt(
        app, client, own_db, reviewer, make_user):
    taro = make_user("taro", department=KOSEKI)
    make_user("boss", "manager", department=KOSEKI)
    campaign_id, page = open_ahead_of_the_wall_clock(app, reviewer)
    login(client, "boss")
    assert client.get(f"{page}/sheets").status_code == 200  # printed ahead: taro has an attempt
    assert attempt_of(own_db, taro.user_id, campaign_id) is not None
    staff = app.test_client()
    login(staff, "taro")
    show = staff.get(f"/selfcheck/{campaign_id}").get_data(as_text=True)
    response = staff.post(f"/selfcheck/{campaign_id}/start", data={"csrf_token": csrf_token(show)})
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/selfcheck/{campaign_id}")  # not to a question
    html = staff.get(response.headers["Location"]).get_data(as_text=True)
    assert selfcheck.NOT_YET in html and "まだ始まっていません" in html


def test_the_managers_page_before_the_opening_time_says_so_and_offers_no_key_in(
        app, client, own_db, reviewer, make_user):
    load_roster(own_db, [("7401", KOSEKI, "", "")])
    make_user("boss", "manager", department=KOSEKI)
    campaign_id, page = open_ahead_of_the_wall_clock(app, reviewer)
    login(client, "boss")
    html = client.get(page).get_data(as_text=True)
    assert "開始前・開始 " in html and "実施中" not in html
    assert "回答（用紙の入力も）は開始日時から受け付けます" in html
    assert "用紙の回答を入力する" not in html  # it would always be refused before the start
    assert f"{page}/sheets" in html  # printing ahead stays offered


def test_a_campaign_closed_before_its_opening_time_is_no_previous_campaign_and_gets_no_summary(
        app, own_db, smtp, reviewer):
    load_roster(own_db, [("7501", KOSEKI, "", "a@example.jp")])
    set_email(own_db, reviewer.user_id, "rev@example.jp")
    # Opened early with a wrong closing time: closing it is the only way out; a new one is made.
    mistaken, _ = open_early(app, reviewer)
    campaigns.close_campaign(own_db, reviewer, mistaken)
    remade, _ = open_early(app, reviewer)
    with app.app_context():
        shown = participation_charts.figures(get_db(), reviewer, remade)
    assert shown["previous"] is None  # not 「前回 0 %」 beside every 所属
    use_smtp(app, smtp)
    assert run(app, NOW)["jobs"]["campaign_summaries"] == {"summaries": 0}
    assert received(smtp, "結果") == []


def test_nobody_is_reminded_of_a_campaign_before_their_invitation_is_queued(app, own_db, smtp,
                                                                           reviewer):
    load_roster(own_db, [("7601", KOSEKI, "", "a@example.jp")])
    closes = f"{(STARTS + timedelta(days=1)).date()}T17:00"  # the start day is a reminder day
    with app.app_context():
        db = get_db()
        campaign_id = make_campaign(db, reviewer, opens=local(STARTS), closes=closes, per_person="1")
        campaigns.open_campaign(db, reviewer, campaign_id, version=version(db, campaign_id),
                                now=local(NOW))
    use_smtp(app, smtp)
    # One run straddling the opening time: its invitation job read 08:59, its reminder job 09:00.
    assert campaigns.invite_started_campaigns(own_db, app.config, STARTS - timedelta(seconds=1)) \
        == {"invited": 0}
    assert reminders.queue_reminders(own_db, app.config, STARTS) == {"reminders": 0, "digests": 0}
    # The next run invites, then reminds.
    at_start = run(app, STARTS + timedelta(minutes=1))
    assert at_start["jobs"]["campaign_invitations"] == {"invited": 1}
    assert at_start["jobs"]["campaign_reminders"]["reminders"] == 1
    assert [message["Subject"].startswith("【自己点検の締切まであと") for message in
            (r.message for r in smtp.received)] == [False, True]  # the invitation first
