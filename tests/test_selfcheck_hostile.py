"""自己点検 attacked by a hostile or careless user (issue #13): each test reproduces a defect
found by trying, through the real stack (Flask test client, SQLite, Whoosh, a real SMTP
server on loopback)."""

from datetime import timedelta

from kb import campaigns, participation_charts, roster, users
from kb.db import get_db
from tests.conftest import login, post_form
from tests.test_campaigns import HEADER, TODAY, finish, make_campaign
# Fixtures (own_db, reviewer, smtp) and helpers shared with the 所属長's tests.
from tests.test_selfcheck_manager import (KOSEKI, open_at_now, own_db, page_of, reviewer,  # noqa: F401
                                          run, section, setup_department, smtp, use_smtp,
                                          users_get)


# --- mail headers --------------------------------------------------------------------------------

def test_a_title_with_a_line_break_is_refused_next_to_the_field(client, app, signed_in):
    signed_in("reviewer", department="soumu-gyousei-joho")
    response = post_form(client, "/campaigns/new", {
        "title": "令和8年度 自己点検\r\nBcc: everyone@example.jp", "opens_at": "2026/12/01 09:00",
        "closes_at": "2026/12/15 17:00", "target": "whole", "questions_per_person": "10",
        "pass_mark": "8", "retakes": "until_passed"})
    assert response.status_code == 422
    assert "改行" in response.get_data(as_text=True)
    with app.app_context():
        assert get_db().execute("SELECT count(*) FROM campaigns").fetchone()[0] == 0


def test_a_roster_name_with_a_line_break_still_gets_the_invitation(app, own_db, smtp, reviewer):
    # A spreadsheet cell with Alt+Enter in it, brought in through the real importer.
    csv_text = (HEADER + "\r\n" + f'2001,"区民\r\n太郎",クミン,{KOSEKI},主事,,,,a@example.jp\r\n')
    roster.import_staff(own_db, users.SYSTEM, csv_text.encode("utf-8"),
                        managers=frozenset({"課長"}), today=TODAY - timedelta(days=90))
    assert own_db.execute("SELECT display_name FROM users WHERE employee_number = '2001'"
                          ).fetchone()[0] == "区民\r\n太郎"
    with app.app_context():
        db = get_db()
        campaign_id = make_campaign(db, reviewer)
        open_at_now(db, reviewer, campaign_id)
    use_smtp(app, smtp)
    run(app)
    [received] = smtp.received
    assert received.rcpt_tos == ["a@example.jp"]
    assert "区民 太郎" in str(received.message["To"])
    assert own_db.execute("SELECT status FROM outbox").fetchone()[0] == "sent"


# --- what a 所属長 can work out ---------------------------------------------------------------------

def test_a_manager_cannot_tell_one_persons_answers_from_item_rates_that_move_as_people_finish(
        app, client, own_db, reviewer, make_user):
    campaign_id, ids, _ = setup_department(app, own_db, reviewer, make_user)
    late = make_user("kumi", department=KOSEKI)
    with app.app_context():
        db = get_db()
        for number in ("1002", "1003"):  # three of the 所属 have finished now
            finish(db, users_get(db, ids[number]), campaign_id, right=True)
    login(client, "boss")
    before = section(client.get(page_of(app, campaign_id)).get_data(as_text=True), "rates-heading")
    with app.app_context():  # the 所属長 sees 「kumi」 move to 完了 on the same page …
        finish(get_db(), late, campaign_id, right=False)
    after = section(client.get(page_of(app, campaign_id)).get_data(as_text=True), "rates-heading")
    # … so any change in the rates between the two visits would be kumi's answers
    assert after == before and "<table" not in after

    campaigns.close_campaign(own_db, reviewer, campaign_id)
    closed = section(client.get(page_of(app, campaign_id)).get_data(as_text=True), "rates-heading")
    assert "<table" in closed and "kumi" not in closed


def test_a_hidden_mean_score_cannot_be_worked_out_from_the_departments_total(
        app, db, reviewer, make_user):
    boss = make_user("boss", "manager", department=KOSEKI)
    koseki = [make_user(f"koseki{n}", department=KOSEKI) for n in range(3)]
    alone = make_user("alone", department="kumin-kazei")
    campaign_id = make_campaign(db, reviewer, departments=("kumin",), per_person="")
    campaigns.open_campaign(db, reviewer, campaign_id)
    for person in koseki:
        finish(db, person, campaign_id, right=True)
    finish(db, alone, campaign_id, right=False)  # the only one of 課税課 to finish
    campaigns.close_campaign(db, reviewer, campaign_id)
    data = participation_charts.figures(db, boss, campaign_id)
    [bureau] = [b for b in data["bureaus"] if b["code"] == "kumin"]
    rows = {s["code"]: s for s in bureau["sections"]}
    assert rows["kumin-kazei"]["completed"] == 1 and rows["kumin-kazei"]["mean_score"] is None
    # 区民部 minus 戸籍住民課 would be 「alone」's own score
    assert bureau["mean_score"] is None
    assert data["total"]["mean_score"] is None
