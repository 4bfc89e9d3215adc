"""Taking a 自己点検: the banner, attempts, one answer at a time, the result.

Every member of staff in a campaign's target may take it while it is open (from its
opening to its closing time). An attempt draws its questions when it starts — evenly
across the checklist sections, the same ones whenever it is resumed — and every answer
is saved when given. The primary key (attempt, question) makes a double click or a
second tab record one answer: the first. A person sees their own answers only.
"""

import json
import random

from kb import checklist, participation
from kb.campaigns import deadline_text, local_now
from kb.db import transaction, utcnow, write_alone
from kb.exceptions import Invalid, NotFound
from kb.roles import require_account

CLOSED = "締切の日時を過ぎたため、この回答は記録されませんでした。"
NOT_YET = "この自己点検はまだ始まっていません。"
SECONDS_PER_QUESTION = 6


def banner(db, user, now: str | None = None) -> dict | None:
    """The open campaign addressed to ``user`` that they have not finished, soonest
    deadline first, as {"campaign_id", "title", "deadline", "minutes"}; None if there is
    none. One indexed query: it runs on every page."""
    if getattr(user, "user_id", None) is None:
        return None
    now = now or local_now()
    row = db.execute(
        "SELECT c.campaign_id, c.title, c.closes_at, coalesce(c.questions_per_person,"
        " (SELECT count(*) FROM campaign_questions q WHERE q.campaign_id = c.campaign_id))"
        " FROM campaign_eligibility e JOIN campaigns c ON c.campaign_id = e.campaign_id"
        " WHERE e.user_id = ? AND e.eligible = 1 AND c.status = 'open' AND c.opens_at <= ?"
        " AND c.closes_at > ? AND NOT EXISTS (SELECT 1 FROM campaign_attempts a"
        " WHERE a.user_id = e.user_id AND a.campaign_id = c.campaign_id"
        " AND a.finished_at IS NOT NULL) ORDER BY c.closes_at LIMIT 1",
        [user.user_id, now, now]).fetchone()
    if row is None:
        return None
    campaign_id, title, closes_at, questions = row
    return {"campaign_id": campaign_id, "title": title,
            "deadline": deadline_text(closes_at).split(" ")[0],
            "minutes": max(1, round(questions * SECONDS_PER_QUESTION / 60))}


def _campaign_for(db, actor, campaign_id: int) -> dict:
    """The campaign if ``actor`` is in its target (NotFound otherwise, drafts included)."""
    require_account(actor)
    campaign = participation.campaign_row(db, campaign_id)
    if campaign["status"] == "draft":
        raise NotFound(f"campaign {campaign_id}")
    person = participation.people_of(db, campaign, user_ids=[actor.user_id]).get(actor.user_id)
    if person is None or person["reason"] == "outside_target":
        raise NotFound(f"campaign {campaign_id} for user {actor.user_id}")
    campaign["person"] = person
    return campaign


def _is_open(campaign: dict, now: str) -> bool:
    return campaign["status"] == "open" and campaign["opens_at"] <= now < campaign["closes_at"]


def overview(db, actor, campaign_id: int, now: str | None = None) -> dict:
    """The campaign's page for one person: {"campaign", "deadline", "open_now", "before_open",
    "attempts" (theirs, oldest first), "current" (an unfinished attempt or None), "passed",
    "can_start" (a first attempt or a retake is possible now), "question_count"}."""
    now = now or local_now()
    campaign = _campaign_for(db, actor, campaign_id)
    attempts = db.execute_returning_dicts(
        "SELECT * FROM campaign_attempts WHERE campaign_id = ? AND user_id = ? ORDER BY number",
        [campaign_id, actor.user_id])
    current = next((a for a in attempts if a["finished_at"] is None), None)
    passed = any(a["passed"] for a in attempts)
    open_now = _is_open(campaign, now)
    count = db.execute("SELECT count(*) FROM campaign_questions WHERE campaign_id = ?",
                       [campaign_id]).fetchone()[0]
    can_start = open_now and current is None and (
        not attempts or (campaign["retakes"] == "until_passed" and not passed))
    return {"campaign": campaign, "deadline": deadline_text(campaign["closes_at"]),
            "open_now": open_now, "before_open": now < campaign["opens_at"], "attempts": attempts, "current": current, "passed": passed,
            "can_start": can_start,
            "question_count": min(campaign["questions_per_person"] or count, count)}


def draw_questions(questions: list[dict], per_person: int | None, seed: str) -> list[int]:
    """Question ids for one attempt: all of them, or ``per_person`` taken in turn from each
    section (sections in random order, a random question from each), so every section
    is asked about as evenly as the numbers allow. Deterministic for a seed; shown in
    the set's own order."""
    if per_person is None or per_person >= len(questions):
        return [q["question_id"] for q in questions]
    rng = random.Random(seed)
    sections: dict[str, list] = {}
    for question in questions:
        sections.setdefault(question["section_code"], []).append(question)
    pools = list(sections.values())
    for pool in pools:
        rng.shuffle(pool)
    rng.shuffle(pools)
    chosen = []
    while len(chosen) < per_person:
        for pool in pools:
            if pool and len(chosen) < per_person:
                chosen.append(pool.pop())
    order = {q["question_id"]: n for n, q in enumerate(questions)}
    return sorted((q["question_id"] for q in chosen), key=order.get)


def start_attempt(db, actor, campaign_id: int, now: str | None = None) -> int:
    """The person's unfinished attempt, or a new one when a first try or a retake is
    allowed (two clicks start one attempt). Invalid when no retake is allowed or the
    campaign is not open now — before its opening time even when an attempt exists
    (the 所属長 may print the paper sheets, which draw it, ahead of that time)."""
    now = now or local_now()
    with transaction(db):
        state = overview(db, actor, campaign_id, now)
        if state["before_open"]:
            raise Invalid({"start": [NOT_YET]})
        if state["current"]:
            return state["current"]["attempt_id"]
        if not state["open_now"]:
            raise Invalid({"start": [CLOSED]})
        if not state["can_start"]:
            raise Invalid({"start": ["この自己点検は回答済みです。"]})
        questions = db.execute_returning_dicts(
            "SELECT question_id, section_code FROM campaign_questions WHERE campaign_id = ?"
            " ORDER BY position, question_id", [campaign_id])
        number = len(state["attempts"]) + 1
        ids = draw_questions(questions, state["campaign"]["questions_per_person"],
                             f"{campaign_id}:{actor.user_id}:{number}")
        return db["campaign_attempts"].insert({
            "campaign_id": campaign_id, "user_id": actor.user_id, "number": number,
            "question_ids": json.dumps(ids), "started_at": utcnow()}).last_pk


def _attempt(db, actor, campaign_id: int, attempt_id: int) -> dict:
    """The actor's own attempt (anyone else's is NotFound)."""
    require_account(actor)
    rows = db.execute_returning_dicts(
        "SELECT * FROM campaign_attempts WHERE attempt_id = ? AND campaign_id = ? AND user_id = ?",
        [attempt_id, campaign_id, actor.user_id])
    if not rows:
        raise NotFound(f"attempt {attempt_id}")
    attempt = rows[0]
    attempt["question_ids"] = json.loads(attempt["question_ids"])
    return attempt


def next_position(db, actor, campaign_id: int, attempt_id: int) -> int | None:
    """The first question (1-based) not yet answered; None when all are."""
    attempt = _attempt(db, actor, campaign_id, attempt_id)
    answered = {row[0] for row in db.execute(
        "SELECT question_id FROM campaign_answers WHERE attempt_id = ?", [attempt_id])}
    for position, question_id in enumerate(attempt["question_ids"], start=1):
        if question_id not in answered:
            return position
    return None


def question(db, actor, campaign_id: int, attempt_id: int, position: int) -> dict:
    """One question of the actor's attempt: {"campaign", "attempt", "position", "total",
    "question" (statement and, once answered, the rest), "answer" (None or the recorded
    answer with ``correct``), "item", "case", "next" (the first unanswered position, None
    when every question is answered)}. The right answer, explanation, item and linked
    case are given only once the question is answered."""
    attempt = _attempt(db, actor, campaign_id, attempt_id)
    ids = attempt["question_ids"]
    if not 1 <= position <= len(ids):
        raise NotFound(f"question {position} of attempt {attempt_id}")
    row = db.execute_returning_dicts("SELECT * FROM campaign_questions WHERE question_id = ?",
                                     [ids[position - 1]])[0]
    answered = {question_id: {"answer": answer, "correct": correct}
                for question_id, answer, correct in db.execute(
                    "SELECT question_id, answer, correct FROM campaign_answers WHERE attempt_id = ?",
                    [attempt_id])}
    answer = answered.get(row["question_id"])
    result = {"campaign": participation.campaign_row(db, campaign_id), "attempt": attempt,
              "position": position, "total": len(ids),
              "question": {"question_id": row["question_id"], "statement": row["statement"]},
              "answer": answer, "item": None, "case": None,
              "next": next((n for n, question_id in enumerate(ids, start=1)
                            if question_id not in answered), None)}
    if answer:
        result["question"].update(answer=row["answer"], explanation=row["explanation"],
                                  item_code=row["item_code"])
        if row["item_code"]:
            try:
                result["item"] = checklist.get_item(db, row["item_code"])
            except NotFound:
                pass
        if row["case_id"]:
            cases = db.execute_returning_dicts(
                "SELECT case_id, title, lesson, summary FROM cases"
                " WHERE case_id = ? AND status = 'published'",
                [row["case_id"]])
            result["case"] = cases[0] if cases else None
    return result


def answer_question(db, actor, campaign_id: int, attempt_id: int, position: int, answer,
                    now: str | None = None) -> bool:
    """Record the actor's ○ (True) or × (False) for one question of their attempt; returns
    whether the recorded answer is correct. A second answer to the same question (double
    click, another tab) records nothing and returns the first one's result. The last
    answer finishes the attempt (score, passed). Invalid — nothing recorded — after the
    closing time or for a finished attempt."""
    now = now or local_now()
    if str(answer) not in ("1", "0", "True", "False"):
        raise Invalid({"answer": ["○か×を選んでください。"]})
    given = int(str(answer) in ("1", "True"))
    # Read and check first, without the write lock: a double click, an answer after the
    # closing time or to a finished attempt never queues for it.
    attempt = _attempt(db, actor, campaign_id, attempt_id)
    ids = attempt["question_ids"]
    if not 1 <= position <= len(ids):
        raise NotFound(f"question {position} of attempt {attempt_id}")
    question_id = ids[position - 1]
    stored = _stored_answer(db, attempt_id, question_id)
    if stored is not None:
        return stored
    campaign = participation.campaign_row(db, campaign_id)
    _check_answerable(campaign, attempt, now)
    right = db.execute("SELECT answer FROM campaign_questions WHERE question_id = ?",
                       [question_id]).fetchone()[0]
    # One statement, its checks in its WHERE (checked again as it writes: another tab may
    # have finished the attempt, a reviewer closed the campaign) — with 200 people
    # answering at once, a transaction of several statements held the write lock while
    # waiting for Python's GIL between them (kb.db.write_alone; README, 自己点検 Load).
    recorded = write_alone(
        db, "INSERT INTO campaign_answers (attempt_id, question_id, answer, correct, answered_at)"
        " SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM campaign_attempts a"
        "  JOIN campaigns c ON c.campaign_id = a.campaign_id WHERE a.attempt_id = ?"
        "  AND a.finished_at IS NULL AND c.status = 'open' AND c.opens_at <= ? AND ? < c.closes_at)"
        " ON CONFLICT (attempt_id, question_id) DO NOTHING",
        [attempt_id, question_id, given, int(given == right), utcnow(), attempt_id, now, now])
    if not recorded:  # answered meanwhile (the first answer counts), or no longer answerable
        stored = _stored_answer(db, attempt_id, question_id)
        if stored is not None:
            return stored
        _check_answerable(participation.campaign_row(db, campaign_id),
                          _attempt(db, actor, campaign_id, attempt_id), now)
        raise Invalid({"answer": [NOT_RECORDED]})
    # Whoever's answer was the last one read all of them: the attempt is finished once. A
    # second statement, so it may fail after the answer was stored (the database locked by
    # another process past the busy timeout): result() and closing finish such an attempt.
    _finish_if_complete(db, attempt_id, len(ids))
    return given == right


NOT_RECORDED = "回答を記録できませんでした。もう一度お試しください。"


# Finishes every unfinished attempt (narrowed by the caller's " AND …") whose questions are
# all answered: score and passed from its answers, dated by its last answer. The WHERE is
# the guard — an attempt is finished once, whoever runs this first.
_FINISH = (
    "UPDATE campaign_attempts SET"
    " finished_at = (SELECT max(s.answered_at) FROM campaign_answers s"
    "  WHERE s.attempt_id = campaign_attempts.attempt_id),"
    " score = (SELECT sum(s.correct) FROM campaign_answers s"
    "  WHERE s.attempt_id = campaign_attempts.attempt_id),"
    " passed = ((SELECT sum(s.correct) FROM campaign_answers s"
    "  WHERE s.attempt_id = campaign_attempts.attempt_id)"
    "  >= (SELECT c.pass_mark FROM campaigns c WHERE c.campaign_id = campaign_attempts.campaign_id))"
    " WHERE finished_at IS NULL AND json_array_length(question_ids) = (SELECT count(*)"
    "  FROM campaign_answers s WHERE s.attempt_id = campaign_attempts.attempt_id)")


def _finish_if_complete(db, attempt_id: int, total: int) -> None:
    """Finish the attempt if all its ``total`` questions are answered and it is not yet
    finished (takes the write lock only then)."""
    answered = db.execute("SELECT count(*) FROM campaign_answers WHERE attempt_id = ?",
                          [attempt_id]).fetchone()[0]
    if answered == total:
        write_alone(db, _FINISH + " AND attempt_id = ?", [attempt_id])


def finish_complete_attempts(db, campaign_id: int) -> int:
    """Finish the campaign's attempts whose every question is answered but which are not
    finished (the finishing write of their last answer failed or has not run yet); inside
    the caller's transaction — closing runs it, so the frozen figures count them and
    nothing finishes after. Returns how many it finished."""
    return db.execute(_FINISH + " AND campaign_id = ?", [campaign_id]).rowcount


def _stored_answer(db, attempt_id: int, question_id: int) -> bool | None:
    row = db.execute("SELECT correct FROM campaign_answers WHERE attempt_id = ? AND question_id = ?",
                     [attempt_id, question_id]).fetchone()
    return None if row is None else bool(row[0])


def _check_answerable(campaign: dict, attempt: dict, now: str) -> None:
    """Invalid after the closing time (or before the opening time), for a closed campaign
    or a finished attempt."""
    if not _is_open(campaign, now):
        raise Invalid({"answer": [CLOSED if now >= campaign["closes_at"] or
                                  campaign["status"] == "closed" else NOT_YET]})
    if attempt["finished_at"]:
        raise Invalid({"answer": ["この回はもう終わっています。"]})


def result(db, actor, campaign_id: int, attempt_id: int, now: str | None = None) -> dict:
    """The end of an attempt: {"attempt", "score", "total", "passed", "missed" (the items
    of wrong answers: code, text, statement, explanation), "can_retake", "campaign"}.
    NotFound until the attempt is finished (its questions are not all answered); one whose
    questions are all answered is finished here if its last answer's request did not."""
    attempt = _attempt(db, actor, campaign_id, attempt_id)
    if attempt["finished_at"] is None:
        _finish_if_complete(db, attempt_id, len(attempt["question_ids"]))
        attempt = _attempt(db, actor, campaign_id, attempt_id)
    if attempt["finished_at"] is None:
        raise NotFound(f"attempt {attempt_id} is not finished")
    missed = db.execute_returning_dicts(
        "SELECT q.item_code, q.statement, q.explanation, q.answer FROM campaign_answers a"
        " JOIN campaign_questions q USING (question_id)"
        " WHERE a.attempt_id = ? AND a.correct = 0 ORDER BY q.position", [attempt_id])
    for row in missed:
        try:
            row["item_text"] = checklist.get_item(db, row["item_code"])["text"] if row["item_code"] else ""
        except NotFound:
            row["item_text"] = ""
    state = overview(db, actor, campaign_id, now)
    return {"campaign": state["campaign"], "attempt": attempt, "score": attempt["score"],
            "total": len(attempt["question_ids"]), "passed": bool(attempt["passed"]),
            "missed": missed, "can_retake": state["can_start"]}
