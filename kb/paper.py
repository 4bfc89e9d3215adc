"""自己点検 on paper, for workplaces without a PC per person: A4 answer sheets the 所属長
prints, and the returned sheets keyed in.

A sheet carries the questions of the person's own attempt. Someone who has not started
gets their attempt when the sheets are made — the same draw as online — so the questions
printed are the ones keyed in, and the same ones the person would see online. Questions
already answered online are printed as such and not keyed in again. Keying a sheet in
finishes the attempt, marked ``on_paper`` with who keyed it in (``keyed_in_by``), audited.

Keying in is allowed from the campaign's opening time until it is closed (a sheet collected
before the deadline may be keyed in after it, while the campaign is still open); once closed
the figures are frozen and it is refused. Sheets may be printed before the opening time, to
hand out when it comes, but not keyed in: nobody answers before the start, online or on
paper. The 所属長 of the person's 所属 (or of the 部 above it) and the reviewers may do
both; the 所属長 never sees the score of what they keyed in.
"""

import json
from datetime import datetime

from kb import audit, campaigns, participation, selfcheck
from kb.db import transaction, utcnow
from kb.exceptions import Invalid, NotFound

CLOSED = "締め切った自己点検の用紙は入力できません（集計は確定しています）。"
CLOSED_PRINT = "締め切った自己点検の回答用紙は印刷できません。"
DRAFT = "まだ開始していない自己点検です。開始してから用紙を印刷してください。"
NOT_YET = "この自己点検は開始日時（{opens}）の前のため、用紙の回答はまだ入力できません。"
ANSWER = "用紙のとおり○か×を選んでください。"
EXCLUDED = "この方は対象から除外されています。用紙を入力するには、先に除外を取り消してください。"
DONE = "この方は既に回答を終えています。用紙の入力は不要です。"
STALE = "この用紙は古いものです。所属のページから用紙を印刷し直してください。"


def _questions(db, campaign_id: int) -> dict[int, dict]:
    return {row["question_id"]: row for row in db.execute_returning_dicts(
        "SELECT question_id, section_code, item_code, statement, answer, position"
        " FROM campaign_questions WHERE campaign_id = ? ORDER BY position, question_id",
        [campaign_id])}


def _open_attempt(db, campaign: dict, user_id: int, questions: dict, *, create: bool) -> dict | None:
    """The person's unfinished attempt; with ``create``, a new one drawn as
    ``kb.selfcheck.start_attempt`` draws it when there is none. Inside a transaction."""
    rows = db.execute_returning_dicts(
        "SELECT * FROM campaign_attempts WHERE campaign_id = ? AND user_id = ? ORDER BY number",
        [campaign["campaign_id"], user_id])
    current = next((row for row in rows if row["finished_at"] is None), None)
    if current is None and create:
        number = len(rows) + 1
        ids = selfcheck.draw_questions(list(questions.values()), campaign["questions_per_person"],
                                       f"{campaign['campaign_id']}:{user_id}:{number}")
        attempt_id = db["campaign_attempts"].insert({
            "campaign_id": campaign["campaign_id"], "user_id": user_id, "number": number,
            "question_ids": json.dumps(ids), "started_at": utcnow()}).last_pk
        current = db.execute_returning_dicts(
            "SELECT * FROM campaign_attempts WHERE attempt_id = ?", [attempt_id])[0]
    if current is not None:
        current["question_ids"] = json.loads(current["question_ids"])
    return current


def _sheet(db, attempt: dict, questions: dict) -> list[dict]:
    answered = {row[0] for row in db.execute(
        "SELECT question_id FROM campaign_answers WHERE attempt_id = ?", [attempt["attempt_id"]])}
    return [{"number": n, "question_id": qid, "statement": questions[qid]["statement"],
             "answered": qid in answered}
            for n, qid in enumerate(attempt["question_ids"], start=1)]


def answer_sheets(db, actor, campaign_id: int, department_id: int) -> dict:
    """The A4 sheets of one 所属: one per eligible person who has not finished, with their
    name, 職員番号, 所属 and the questions of their attempt (created now for those who have
    none, in one transaction). Returns {"campaign", "department", "sheets": [{"person",
    "attempt_id", "questions": [{"number", "question_id", "statement", "answered"}]}]}.
    Forbidden for another 所属 (``participation.require_department``); Invalid for a
    draft or a closed campaign."""
    with transaction(db):
        status = participation.department_status(db, actor, campaign_id, department_id)
        campaign = status["campaign"]
        if campaign["status"] != "open":
            raise Invalid({"sheets": [DRAFT if campaign["status"] == "draft" else CLOSED_PRINT]})
        questions = _questions(db, campaign_id)
        sheets = []
        for person in status["not_yet"]:
            attempt = _open_attempt(db, campaign, person["user_id"], questions, create=True)
            sheets.append({"person": person, "attempt_id": attempt["attempt_id"],
                           "questions": _sheet(db, attempt, questions)})
    return {"campaign": campaign, "department": status["department"], "sheets": sheets}


def _person(db, actor, campaign: dict, user_id: int) -> dict:
    """The person (eligible, of a 所属 the actor may act for) with their account."""
    person = participation.people_of(db, campaign, user_ids=[user_id]).get(user_id)
    if person is None or person["reason"] == "outside_target":
        raise NotFound(f"user {user_id} in campaign {campaign['campaign_id']}")
    participation.require_department(db, actor, person["department_id"])
    account = db.execute_returning_dicts(
        "SELECT user_id, login, employee_number, display_name AS name FROM users WHERE user_id = ?",
        [user_id])[0]
    return {**person, **account}


def sheet_for(db, actor, campaign_id: int, user_id: int) -> dict:
    """What the key-in form of one returned sheet shows: {"campaign", "person", "attempt"
    (or None when no sheet was made), "questions" (as on the sheet), "done" (the person
    has finished: nothing to key in)}. Never answers or a score."""
    campaign = participation.campaign_row(db, campaign_id)
    person = _person(db, actor, campaign, user_id)
    done = db.execute("SELECT 1 FROM campaign_attempts WHERE campaign_id = ? AND user_id = ?"
                      " AND finished_at IS NOT NULL", [campaign_id, user_id]).fetchone() is not None
    questions = _questions(db, campaign_id)
    attempt = None if done else _open_attempt(db, campaign, user_id, questions, create=False)
    return {"campaign": campaign, "person": person, "attempt": attempt, "done": done,
            "questions": _sheet(db, attempt, questions) if attempt else []}


def key_in_sheet(db, actor, campaign_id: int, user_id: int, attempt_id: int, answers: dict,
                 now: datetime | None = None) -> int:
    """Record a returned sheet: ``answers`` maps each question id not yet answered online
    (as int or str) to "1" (○) or "0" (×). Finishes the attempt with its score, marked
    ``on_paper`` and ``keyed_in_by`` the actor; audited as ``campaign_paper_key_in``.
    Returns how many answers were recorded.

    Invalid — nothing written — for a missing or unreadable answer (by field ``q<id>``),
    a closed campaign or one whose opening time has not come at ``now`` (an aware datetime,
    default: the clock), a person who is excluded or has finished (or answered every question
    online) meanwhile, or a sheet that is not the person's current one (``sheet``); NotFound
    for someone outside the target;
    Forbidden for a 所属 the actor may not act for."""
    with transaction(db):
        campaign = participation.campaign_row(db, campaign_id)
        person = _person(db, actor, campaign, user_id)
        if campaign["status"] != "open":
            raise Invalid({"sheet": [DRAFT if campaign["status"] == "draft" else CLOSED]})
        if not campaigns.has_started(campaign, now):
            raise Invalid({"sheet": [NOT_YET.format(opens=campaign["opens_at"].replace("T", " "))]})
        if not person["eligible"]:
            raise Invalid({"sheet": [EXCLUDED]})
        questions = _questions(db, campaign_id)
        attempt = _open_attempt(db, campaign, user_id, questions, create=False)
        if attempt is None:
            raise Invalid({"sheet": [DONE]})
        if attempt["attempt_id"] != attempt_id:
            raise Invalid({"sheet": [STALE]})
        sheet = [q for q in _sheet(db, attempt, questions) if not q["answered"]]
        if not sheet:  # all answered online, the attempt about to be finished by that answer
            raise Invalid({"sheet": [DONE]})
        errors, given = {}, {}
        for question in sheet:
            qid = question["question_id"]
            value = str(answers.get(qid, answers.get(str(qid), "")))
            if value not in ("1", "0"):
                errors[f"q{question['question_id']}"] = [ANSWER]
            else:
                given[question["question_id"]] = int(value)
        if errors:
            raise Invalid(errors)
        now = utcnow()
        db.conn.executemany(
            "INSERT INTO campaign_answers (attempt_id, question_id, answer, correct, answered_at)"
            " VALUES (?, ?, ?, ?, ?)",
            [(attempt_id, qid, value, int(value == questions[qid]["answer"]), now)
             for qid, value in given.items()])
        score = db.execute("SELECT coalesce(sum(correct), 0) FROM campaign_answers"
                           " WHERE attempt_id = ?", [attempt_id]).fetchone()[0]
        db.execute("UPDATE campaign_attempts SET finished_at = ?, score = ?, passed = ?,"
                   " on_paper = 1, keyed_in_by = ? WHERE attempt_id = ?",
                   [now, score, int(score >= campaign["pass_mark"]), actor.user_id, attempt_id])
        audit.record(db, actor, "campaign_paper_key_in", target=str(campaign_id),
                     detail={"user_id": user_id, "attempt_id": attempt_id, "answers": len(given)})
    return len(given)
