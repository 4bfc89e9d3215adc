"""自己点検 attacked by a hostile or careless user (issue #13): each test reproduces a defect
found by trying, through the real stack (Flask test client, SQLite, Whoosh, a real SMTP
server on loopback)."""

import sqlite3
from datetime import timedelta

import pytest

from kb import campaigns, paper, participation, participation_charts, roster, selfcheck, users
from kb.db import database_path, get_db, open_db
from kb.exceptions import Invalid
from tests.conftest import login, post_form
from tests.test_campaigns import HEADER, TODAY, finish, make_campaign, version
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


# --- the one-statement answer (b990a58): what runs between the last answer and the finish ----
#
# An answer is stored by one autocommit INSERT and the attempt finished by a second statement.
# `between` runs something on another connection at the moment the finishing UPDATE starts,
# before it takes any lock (SQLite calls the trace callback from the statement's first
# instruction): a real interleaving of two connections, not a stand-in for our code.

FINISHING = "UPDATE campaign_attempts"


def between(connection, action):
    """Run ``action()`` once, when ``connection`` starts its first statement beginning
    with FINISHING; returns the list its exceptions land in (the callback swallows them)."""
    errors, done = [], []

    def trace(sql):
        if not done and sql.lstrip().startswith(FINISHING):
            done.append(True)
            try:
                action()
            except Exception as error:  # noqa: BLE001 - asserted by the test
                errors.append(error)

    connection.conn.set_trace_callback(trace)
    return errors


def one_left(db, person, campaign_id):
    """An attempt of two questions with the first answered right: (attempt id, right
    answer of the second)."""
    attempt_id = selfcheck.start_attempt(db, person, campaign_id)
    ids = selfcheck._attempt(db, person, campaign_id, attempt_id)["question_ids"]
    rights = [db.execute("SELECT answer FROM campaign_questions WHERE question_id = ?",
                         [q]).fetchone()[0] for q in ids]
    selfcheck.answer_question(db, person, campaign_id, attempt_id, 1, rights[0])
    return attempt_id, rights[1]


def test_an_attempt_whose_finishing_write_failed_is_finished_when_its_result_is_opened(
        app, client, own_db, reviewer, make_user):
    """The last answer is stored, then the database is locked by another process past the
    busy timeout: the finishing UPDATE fails. The attempt used to stay unfinished for good —
    every answer given, the result 404, the banner on every page, not counted."""
    campaign_id = make_campaign(own_db, reviewer, per_person="2", pass_mark="2")
    campaigns.open_campaign(own_db, reviewer, campaign_id, version=version(own_db, campaign_id))
    person = make_user("locked-out", "staff", department=KOSEKI)
    attempt_id, right = one_left(own_db, person, campaign_id)
    path = database_path(app.config["DATA_DIR"])
    answering, other_process = open_db(path), open_db(path)
    answering.conn.execute("PRAGMA busy_timeout = 50")
    try:
        errors = between(answering, lambda: other_process.conn.execute("BEGIN IMMEDIATE"))
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            selfcheck.answer_question(answering, person, campaign_id, attempt_id, 2, right)
        assert not errors
    finally:
        other_process.conn.rollback()
        answering.close()
        other_process.close()
    assert own_db.execute("SELECT count(*) FROM campaign_answers WHERE attempt_id = ?",
                      [attempt_id]).fetchone()[0] == 2
    login(client, "locked-out")
    page = client.get(f"/selfcheck/{campaign_id}/attempts/{attempt_id}", follow_redirects=True)
    assert page.status_code == 200, page.status_code
    attempt = selfcheck._attempt(own_db, person, campaign_id, attempt_id)
    assert attempt["finished_at"] and attempt["score"] == 2 and attempt["passed"] == 1


def test_closing_between_the_last_answer_and_the_finish_freezes_figures_that_never_move(
        app, db, reviewer, make_user):
    """A reviewer closes the campaign after the last answer was stored but before the attempt
    was finished: the figures frozen at closing used to leave the person out, and then
    changed when the finish ran after the close."""
    campaign_id = make_campaign(db, reviewer, per_person="2", pass_mark="2")
    campaigns.open_campaign(db, reviewer, campaign_id, version=version(db, campaign_id))
    person = make_user("last-second", "staff", department=KOSEKI)
    attempt_id, right = one_left(db, person, campaign_id)
    path = database_path(app.config["DATA_DIR"])
    answering, frozen = open_db(path), {}

    def close():
        closer = open_db(path)
        try:
            campaigns.close_campaign(closer, reviewer, campaign_id)
            frozen.update(participation.campaign_report(closer, campaign_id)["total"])
        finally:
            closer.close()

    try:
        errors = between(answering, close)
        assert selfcheck.answer_question(answering, person, campaign_id, attempt_id, 2, right)
        assert not errors
    finally:
        answering.close()
    assert participation.campaign_report(db, campaign_id)["total"] == frozen
    assert frozen["completed"] == 1
    attempt = selfcheck._attempt(db, person, campaign_id, attempt_id)
    closed_at = participation.campaign_row(db, campaign_id)["closed_at"]
    assert attempt["score"] == 2 and attempt["finished_at"] <= closed_at


def test_a_sheet_keyed_in_after_the_last_online_answer_is_refused_not_marked_on_paper(
        app, db, reviewer, make_user):
    """A sheet keyed in after the person's last online answer was stored, before that answer
    finished the attempt, used to be accepted with nothing to record and mark the attempt
    done on paper, keyed in by the reviewer, while every answer was given online."""
    campaign_id = make_campaign(db, reviewer, per_person="2", pass_mark="2")
    campaigns.open_campaign(db, reviewer, campaign_id, version=version(db, campaign_id))
    person = make_user("both-ways", "staff", department=KOSEKI)
    attempt_id, right = one_left(db, person, campaign_id)
    path = database_path(app.config["DATA_DIR"])
    answering, keyed = open_db(path), []

    def key_in():
        desk = open_db(path)
        try:
            keyed.append(paper.key_in_sheet(desk, reviewer, campaign_id, person.user_id,
                                            attempt_id, {}))
        finally:
            desk.close()

    try:
        errors = between(answering, key_in)
        selfcheck.answer_question(answering, person, campaign_id, attempt_id, 2, right)
    finally:
        answering.close()
    assert not keyed
    assert [e.errors for e in errors if isinstance(e, Invalid)] == [{"sheet": [paper.DONE]}]
    attempt = selfcheck._attempt(db, person, campaign_id, attempt_id)
    assert attempt["finished_at"] and attempt["on_paper"] == 0 and attempt["keyed_in_by"] is None
    assert db.execute("SELECT count(*) FROM audit_log WHERE action = 'campaign_paper_key_in'"
                      ).fetchone()[0] == 0
