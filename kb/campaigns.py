"""自己点検 campaigns: what reviewers author — settings, the question set — and the
lifecycle draft → open → closed.

A campaign is made by the reviewers (情報管理担当). Its questions are ○× statements
generated from chosen checklist sections or items (``kb.quiz``) that the author then
edits, adds or drops; each keeps its item code, an explanation and optionally a linked
published case. Opening freezes the question set and writes who is addressed, in one
transaction; the invitations (``kb.mail``) go to each of them who has an address when the
campaign starts — in that transaction when its opening time has come, else from the
scheduler's ``campaign_invitations`` job once it has. Closing freezes who was eligible
(``kb.participation``). Taking a campaign is ``kb.selfcheck``.
"""

import json
from datetime import date, datetime, timezone

from kb import audit, checklist, dates, mail, participation, quiz, scheduler, search
from kb.db import transaction, utcnow
from kb.exceptions import Conflict, Invalid, NotFound
from kb.roles import require_role

STATUS_LABELS = {"draft": "下書き", "open": "実施中", "closed": "締切済み"}
RETAKES = ("none", "until_passed")
RETAKE_LABELS = {"none": "やり直しなし", "until_passed": "合格するまで何度でも"}
TITLE_LIMIT = 120
STATEMENT_LIMIT = 300
EXPLANATION_LIMIT = 1000
MAX_QUESTIONS = 200
MAX_PER_PERSON = 100
TIME_FORMAT = "%Y-%m-%dT%H:%M"
FROZEN = "実施中・締切済みの自己点検の問題は変更できません（開始した時点で問題が確定しています）。"


def local_now() -> str:
    """The office's local time as campaigns store it ("YYYY-MM-DDTHH:MM")."""
    return dates.office_now().strftime(TIME_FORMAT)


def local_moment(now: datetime | None) -> str:
    """``now`` (default: the clock) as campaigns store times: the office's local
    "YYYY-MM-DDTHH:MM"."""
    return dates.in_office_time(now if now is not None else dates.office_now()).strftime(TIME_FORMAT)


def has_started(campaign: dict, now: datetime | None = None) -> bool:
    """Whether the campaign's opening time has come at ``now`` (default: the clock). Before
    it nobody is invited, shown the banner, reminded or allowed to answer."""
    return campaign["opens_at"] <= local_moment(now)


def never_ran(campaign: dict) -> bool:
    """Whether the campaign was closed before its opening time came (opened early, then
    closed — say to put a wrong time right in a new one): nobody could take it, so it is
    no "previous campaign" to compare with and has no results to summarise."""
    return campaign["status"] == "closed" and bool(campaign["closed_at"]) \
        and not has_started(campaign, datetime.fromisoformat(campaign["closed_at"]))


def _as_moment(local: str | None) -> datetime | None:
    """A stored local time back as an aware datetime (None stays None: the clock)."""
    return datetime.strptime(local, TIME_FORMAT).replace(tzinfo=dates.OFFICE_TZ) if local else None


def deadline_text(closes_at: str) -> str:
    """「12月15日 17:00」"""
    moment = datetime.strptime(closes_at, TIME_FORMAT)
    return f"{moment.month}月{moment.day}日 {moment:%H:%M}"


# --- reading --------------------------------------------------------------------------------

def list_campaigns(db, actor) -> list[dict]:
    """Every campaign, newest first, with its question count (reviewers only)."""
    require_role(actor, "reviewer")
    return db.execute_returning_dicts(
        "SELECT c.*, (SELECT count(*) FROM campaign_questions q WHERE q.campaign_id = c.campaign_id)"
        " AS question_count FROM campaigns c ORDER BY c.opens_at DESC, c.campaign_id DESC")


def get_campaign(db, actor, campaign_id: int) -> dict:
    """A campaign with ``department_ids`` (empty for the whole office), ``questions`` in
    order (each with ``case_title`` of its linked case) and ``started`` (its opening time
    has come on the clock). Reviewers only."""
    require_role(actor, "reviewer")
    campaign = participation.campaign_row(db, campaign_id)
    campaign["department_ids"] = [row[0] for row in db.execute(
        "SELECT department_id FROM campaign_departments WHERE campaign_id = ?", [campaign_id])]
    campaign["questions"] = db.execute_returning_dicts(
        "SELECT q.*, c.title AS case_title FROM campaign_questions q"
        " LEFT JOIN cases c ON c.case_id = q.case_id WHERE q.campaign_id = ?"
        " ORDER BY q.position, q.question_id", [campaign_id])
    campaign["editable"] = campaign["status"] == "draft"
    campaign["started"] = has_started(campaign)
    return campaign


def get_question(db, actor, campaign_id: int, question_id: int) -> dict:
    require_role(actor, "reviewer")
    rows = db.execute_returning_dicts(
        "SELECT q.*, c.title AS case_title FROM campaign_questions q"
        " LEFT JOIN cases c ON c.case_id = q.case_id"
        " WHERE q.campaign_id = ? AND q.question_id = ?", [campaign_id, question_id])
    if not rows:
        raise NotFound(f"question {question_id} of campaign {campaign_id}")
    return rows[0]


# --- settings -------------------------------------------------------------------------------

def _check_settings(db, *, title, opens_at, closes_at, whole_office, department_ids,
                    questions_per_person, pass_mark, retakes) -> dict:
    errors: dict[str, list[str]] = {}
    title = (title or "").strip()
    if not title:
        errors["title"] = ["名前を入力してください（例：令和8年度 個人情報 自己点検）。"]
    elif len(title) > TITLE_LIMIT:
        errors["title"] = [f"名前は{TITLE_LIMIT}文字以内にしてください。"]
    elif mail.one_line(title) != title:
        # The title is the subject line of every mail the campaign causes.
        errors["title"] = ["名前に改行や制御文字は使えません。1行で入力してください。"]
    times = {}
    for key, value, label in (("opens_at", opens_at, "開始"), ("closes_at", closes_at, "締切")):
        try:
            # 2026/12/01 09:00, 2026-12-01T09:00, 令和8年12月1日 9時 … (kb.dates)
            moment = dates.parse_moment(value)
        except dates.DateError as error:
            errors[key] = [str(error)]
            continue
        if moment is None:
            errors[key] = [f"{label}の日時を入力してください（例：2026/12/01 09:00）。"]
        else:
            times[key] = moment
    if len(times) == 2 and times["closes_at"] <= times["opens_at"]:
        errors["closes_at"] = ["締切は開始より後にしてください。"]
    whole = bool(whole_office)
    chosen = []
    if not whole:
        try:
            chosen = sorted({int(d) for d in department_ids or []})
        except (TypeError, ValueError):
            chosen = [-1]
        known = {row[0] for row in db.execute("SELECT department_id FROM departments")}
        if not chosen:
            errors["department_ids"] = ["対象の部・課を1つ以上選ぶか、「全庁」を選んでください。"]
        elif set(chosen) - known:
            errors["department_ids"] = ["対象の部・課は一覧から選んでください。"]
    per_person = None
    text = str(questions_per_person or "").strip()
    if text:
        if not text.isdigit() or not 1 <= int(text) <= MAX_PER_PERSON:
            errors["questions_per_person"] = [f"1人あたりの問題数は1〜{MAX_PER_PERSON}の数か、空欄（全問）にしてください。"]
        else:
            per_person = int(text)
    mark = str(pass_mark if pass_mark is not None else "").strip()
    if not mark.isdigit():
        errors["pass_mark"] = ["合格点を0以上の数で入力してください（例：8）。"]
        mark = "0"
    elif per_person is not None and int(mark) > per_person:
        errors["pass_mark"] = [f"合格点は1人あたりの問題数（{per_person}問）以下にしてください。"]
    if retakes not in RETAKES:
        errors["retakes"] = ["やり直しの扱いを選んでください。"]
    if errors:
        raise Invalid(errors)
    return {"title": title, "opens_at": times["opens_at"], "closes_at": times["closes_at"],
            "whole_office": int(whole), "department_ids": chosen,
            "questions_per_person": per_person, "pass_mark": int(mark), "retakes": retakes}


def create_campaign(db, actor, **settings) -> int:
    """Create a draft campaign (reviewers only). ``settings``: title, opens_at, closes_at
    ("YYYY-MM-DDTHH:MM", local time), whole_office, department_ids, questions_per_person
    (None or '' for all), pass_mark (correct answers needed), retakes ('none' or
    'until_passed'). Raises Invalid by field; nothing is written then."""
    require_role(actor, "reviewer")
    values = _check_settings(db, **settings)
    chosen = values.pop("department_ids")
    now = utcnow()
    with transaction(db):
        campaign_id = db["campaigns"].insert({**values, "status": "draft", "created_by": actor.user_id,
                                              "created_at": now, "updated_at": now}).last_pk
        _set_departments(db, campaign_id, chosen)
        audit.record(db, actor, "campaign_create", target=str(campaign_id),
                     detail={"title": values["title"]})
    return campaign_id


def update_campaign(db, actor, campaign_id: int, *, version, **settings) -> None:
    """Change a draft's settings. Invalid by field (or once opened: the settings are then
    fixed), Conflict when the campaign changed since ``version``; nothing written then."""
    require_role(actor, "reviewer")
    values = _check_settings(db, **settings)
    chosen = values.pop("department_ids")
    with transaction(db):
        _editable(db, campaign_id, version, field="title",
                  message="開始した自己点検の設定は変更できません。")
        db["campaigns"].update(campaign_id, values)
        _set_departments(db, campaign_id, chosen)
        _bump(db, campaign_id)
        audit.record(db, actor, "campaign_update", target=str(campaign_id))


def _set_departments(db, campaign_id: int, department_ids) -> None:
    db.execute("DELETE FROM campaign_departments WHERE campaign_id = ?", [campaign_id])
    db.conn.executemany("INSERT INTO campaign_departments (campaign_id, department_id) VALUES (?, ?)",
                        [(campaign_id, d) for d in department_ids])


def _editable(db, campaign_id: int, version, *, field="questions", message=FROZEN) -> dict:
    """The campaign if still a draft at ``version`` (None skips the check); called inside
    the write transaction."""
    campaign = participation.campaign_row(db, campaign_id)
    if campaign["status"] != "draft":
        raise Invalid({field: [message]})
    if version is not None and str(version) != str(campaign["version"]):
        raise Conflict(f"campaign {campaign_id} is at version {campaign['version']}")
    return campaign


def _bump(db, campaign_id: int) -> None:
    db.execute("UPDATE campaigns SET version = version + 1, updated_at = ? WHERE campaign_id = ?",
               [utcnow(), campaign_id])


# --- questions ------------------------------------------------------------------------------

def generate_questions(db, actor, campaign_id: int, *, section_codes=(), item_codes=(),
                       version) -> int:
    """Add a generated ○× statement for each item of the chosen sections and items of the
    current checklist that has no question yet (true: a guidance sentence as written;
    false: the same with one controlled change), with an explanation that gives the
    correct sentence. Returns how many were added; Invalid when nothing was chosen."""
    require_role(actor, "reviewer")
    sections, codes = set(section_codes or ()), set(item_codes or ())
    if not sections and not codes:
        raise Invalid({"generate": ["問題にするチェックリストの章か項目を選んでください。"]})
    items = [item for item in checklist.current_items(db)
             if item["section_code"] in sections or item["code"] in codes]
    with transaction(db):
        _editable(db, campaign_id, version)
        present = {row[0] for row in db.execute(
            "SELECT item_code FROM campaign_questions WHERE campaign_id = ?", [campaign_id])}
        fresh = [item for item in items if item["code"] not in present]
        position = _next_position(db, campaign_id)
        now = utcnow()
        statements = quiz.item_statements(fresh)
        if position + len(statements) > MAX_QUESTIONS:
            raise Invalid({"generate": [f"問題は1つの自己点検に{MAX_QUESTIONS}問までです。"]})
        for offset, statement in enumerate(statements):
            db["campaign_questions"].insert({
                "campaign_id": campaign_id, "position": position + offset,
                "section_code": statement["section_code"], "item_code": statement["item_code"],
                "statement": statement["statement"], "answer": int(statement["answer"]),
                "explanation": _explanation(statement), "case_id": None,
                "created_at": now, "updated_at": now})
        _bump(db, campaign_id)
        audit.record(db, actor, "campaign_generate", target=str(campaign_id),
                     detail={"added": len(statements)})
    return len(statements)


def _explanation(statement: dict) -> str:
    if statement["answer"]:
        return f"正しい内容です。{statement['correct']}"
    return f"誤りです（{statement['change']}）。正しくは「{statement['correct']}」"


def _next_position(db, campaign_id: int) -> int:
    return db.execute("SELECT coalesce(max(position) + 1, 0) FROM campaign_questions"
                      " WHERE campaign_id = ?", [campaign_id]).fetchone()[0]


def _check_question(db, *, statement, answer, item_code, explanation, case_id) -> dict:
    errors: dict[str, list[str]] = {}
    statement = (statement or "").strip()
    if not statement:
        errors["statement"] = ["問題文を入力してください。"]
    elif len(statement) > STATEMENT_LIMIT:
        errors["statement"] = [f"問題文は{STATEMENT_LIMIT}文字以内にしてください。"]
    if str(answer) not in ("1", "0", "True", "False"):
        errors["answer"] = ["正解（○か×）を選んでください。"]
    item_code = (item_code or "").strip()
    section_code = ""
    if item_code:
        row = db.execute("SELECT section_code FROM checklist_items WHERE code = ?"
                         " ORDER BY version_id DESC LIMIT 1", [item_code]).fetchone()
        if row is None:
            errors["item_code"] = ["チェックリストにない項目番号です（例：3-2）。"]
        else:
            section_code = row[0]
    explanation = (explanation or "").strip()
    if len(explanation) > EXPLANATION_LIMIT:
        errors["explanation"] = [f"解説は{EXPLANATION_LIMIT}文字以内にしてください。"]
    linked = None
    if str(case_id or "").strip():
        text = str(case_id).strip()
        status = db.execute("SELECT status FROM cases WHERE case_id = ?",
                            [int(text)]).fetchone() if text.isdigit() else None
        if status is None or status[0] != "published":
            errors["case_id"] = ["結び付けられるのは公開された事例だけです。"]
        else:
            linked = int(text)
    if errors:
        raise Invalid(errors)
    return {"statement": statement, "answer": int(str(answer) in ("1", "True")),
            "item_code": item_code, "section_code": section_code, "explanation": explanation,
            "case_id": linked}


def add_question(db, actor, campaign_id: int, *, version, **fields) -> int:
    """Add a question written by hand at the end (fields as ``update_question``)."""
    require_role(actor, "reviewer")
    values = _check_question(db, **fields)
    with transaction(db):
        _editable(db, campaign_id, version)
        now = utcnow()
        question_id = db["campaign_questions"].insert({
            **values, "campaign_id": campaign_id, "position": _next_position(db, campaign_id),
            "created_at": now, "updated_at": now}).last_pk
        _bump(db, campaign_id)
        audit.record(db, actor, "campaign_question_add", target=str(campaign_id),
                     detail={"question_id": question_id})
    return question_id


def update_question(db, actor, campaign_id: int, question_id: int, *, version, statement,
                    answer, item_code, explanation, case_id) -> None:
    """Rewrite a question: statement, answer (1 ○ / 0 ×), checklist item code, explanation,
    linked published case (or none). Invalid by field — or once the campaign has opened —
    and Conflict when the campaign changed since ``version``; nothing written then."""
    get_question(db, actor, campaign_id, question_id)
    values = _check_question(db, statement=statement, answer=answer, item_code=item_code,
                             explanation=explanation, case_id=case_id)
    with transaction(db):
        _editable(db, campaign_id, version)
        db["campaign_questions"].update(question_id, {**values, "updated_at": utcnow()})
        _bump(db, campaign_id)
        audit.record(db, actor, "campaign_question_update", target=str(campaign_id),
                     case_id=values["case_id"], detail={"question_id": question_id})


def delete_question(db, actor, campaign_id: int, question_id: int, *, version) -> None:
    """Drop a question from a draft (Invalid once opened; Conflict as above)."""
    get_question(db, actor, campaign_id, question_id)
    with transaction(db):
        _editable(db, campaign_id, version)
        db.execute("DELETE FROM campaign_questions WHERE question_id = ?", [question_id])
        _bump(db, campaign_id)
        audit.record(db, actor, "campaign_question_delete", target=str(campaign_id),
                     detail={"question_id": question_id})


def suggest_cases(db, ix, actor, campaign_id: int, question_id: int, limit: int = 8) -> list[dict]:
    """Published cases that show why a question matters: a search for its checklist item's
    text (else the statement). The author picks one, or none."""
    question = get_question(db, actor, campaign_id, question_id)
    text = question["statement"]
    if question["item_code"]:
        try:
            text = checklist.get_item(db, question["item_code"])["text"]
        except NotFound:
            pass
    result = search.search_cases(ix, db, actor, text[:100], page_size=limit)
    return [hit for hit in result.hits if hit.get("status", "published") == "published"][:limit]


# --- lifecycle ------------------------------------------------------------------------------

def open_campaign(db, actor, campaign_id: int, *, version=None, now: str | None = None) -> int | None:
    """Open a draft: the question set is frozen from now on, who is addressed is written,
    and — if its opening time has come — an invitation is queued for each of them with an
    e-mail address, all in one transaction. Returns the number of invitations, or None
    for a campaign opened before its opening time: its invitations are queued by the
    scheduler's ``campaign_invitations`` job once that time comes (a mail must not lead to
    a quiz that cannot be answered yet). Invalid without questions, with a pass mark above
    the questions a person gets, or when the closing time has passed; Conflict when the
    campaign changed since ``version``. ``now`` (local "YYYY-MM-DDTHH:MM", default the
    clock) also dates the invitations."""
    require_role(actor, "reviewer")
    moment = _as_moment(now)
    now = now or local_now()
    with transaction(db):
        campaign = participation.campaign_row(db, campaign_id)
        if campaign["status"] != "draft":
            raise Invalid({"open": ["この自己点検は既に開始しています。"]})
        if version is not None and str(version) != str(campaign["version"]):
            raise Conflict(f"campaign {campaign_id} is at version {campaign['version']}")
        count = db.execute("SELECT count(*) FROM campaign_questions WHERE campaign_id = ?",
                           [campaign_id]).fetchone()[0]
        if not count:
            raise Invalid({"open": ["問題が1問もないため開始できません。チェックリストから問題を作ってください。"]})
        asked = min(campaign["questions_per_person"] or count, count)
        if campaign["pass_mark"] > asked:
            raise Invalid({"open": [f"合格点（{campaign['pass_mark']}問）が1人に出す問題数（{asked}問）を超えています。"]})
        if campaign["closes_at"] <= now:
            raise Invalid({"open": ["締切の日時を過ぎています。設定で締切を延ばしてから開始してください。"]})
        people = participation.compute_eligibility(db, campaign, today=date.fromisoformat(now[:10]))
        participation.write_eligibility(db, campaign_id, people)
        db.execute("UPDATE campaigns SET status = 'open', opened_at = ?, updated_at = ?,"
                   " version = version + 1 WHERE campaign_id = ?", [utcnow(), utcnow(), campaign_id])
        started = has_started(campaign, moment)
        invited = queue_invitations(db, campaign, now=moment)
        audit.record(db, actor, "campaign_open", target=str(campaign_id),
                     detail={"eligible": sum(p["eligible"] for p in people.values()),
                             "invitations": invited,
                             **({} if started else {"invitations_at": campaign["opens_at"]})})
    return invited if started else None


def uninvited(db, campaign_id: int, user_ids=None) -> list[tuple[int, str]]:
    """(user_id, name) of the people the campaign's stored eligibility addresses (all, or
    those of ``user_ids``) who have a deliverable address, have not finished it and have
    no invitation yet (``invite:<campaign>:<user>``). Reads only."""
    narrow, params = "", []
    if user_ids is not None:
        narrow, params = " AND e.user_id IN (SELECT value FROM json_each(?))", [json.dumps(list(user_ids))]
    return [(user_id, name) for user_id, name, address in db.execute(
        "SELECT u.user_id, u.display_name, u.email FROM campaign_eligibility e"
        " JOIN users u USING (user_id) WHERE e.campaign_id = ? AND e.eligible = 1"
        " AND u.active = 1 AND u.email != ''"
        " AND NOT EXISTS (SELECT 1 FROM outbox o"
        "  WHERE o.dedupe_key = 'invite:' || e.campaign_id || ':' || e.user_id)"
        " AND NOT EXISTS (SELECT 1 FROM campaign_attempts a WHERE a.campaign_id = e.campaign_id"
        "  AND a.user_id = e.user_id AND a.finished_at IS NOT NULL)"
        f"{narrow} ORDER BY u.user_id", [campaign_id, *params]).fetchall()
        if mail.is_deliverable(address)]


def queue_invitations(db, campaign: dict, *, user_ids=None, now: datetime | None = None,
                      settings=None) -> int:
    """Queue the invitation (``templates/mail/campaign_invitation.txt``) to each person
    ``uninvited`` lists, inside the caller's transaction; return how many — none before the
    campaign's opening time at ``now`` (default: the clock; ``invite_started_campaigns``
    sends them when it comes). The dedupe key ``invite:<campaign>:<user>`` means nobody is
    ever invited twice to one campaign, at its opening, at its opening time or when they
    join it later (``kb.enrolment``)."""
    if not has_started(campaign, now):
        return 0
    campaign_id = campaign["campaign_id"]
    context = {"campaign_id": campaign_id, "title": campaign["title"],
               "deadline": deadline_text(campaign["closes_at"]),
               "path": f"/selfcheck/{campaign_id}"}
    count = 0
    for user_id, name in uninvited(db, campaign_id, user_ids):
        if mail.queue_mail(db, kind="campaign_invitation", dedupe_key=f"invite:{campaign_id}:{user_id}",
                           to_user_id=user_id, template="campaign_invitation", settings=settings,
                           now=now, context={**context, "name": name}):
            count += 1
    return count


def close_campaign(db, actor, campaign_id: int, *, version=None) -> None:
    """Close an open campaign and freeze who was eligible and why each other person was not
    (the figures never move afterwards). Invalid for a draft (closing before opening) or
    one already closed; Conflict when it changed since ``version``."""
    require_role(actor, "reviewer")
    with transaction(db):
        _close(db, actor, campaign_id, version)


def _close(db, actor, campaign_id: int, version, moment: datetime | None = None) -> None:
    campaign = participation.campaign_row(db, campaign_id)
    if campaign["status"] == "draft":
        raise Invalid({"close": ["まだ開始していない自己点検は締め切れません。"]})
    if campaign["status"] == "closed":
        raise Invalid({"close": ["この自己点検は既に締め切っています。"]})
    if version is not None and str(version) != str(campaign["version"]):
        raise Conflict(f"campaign {campaign_id} is at version {campaign['version']}")
    from kb import selfcheck  # here, not at the top: selfcheck imports this module
    # An attempt whose last answer is stored but whose finishing write has not run (or
    # failed) is finished now, before the figures freeze, not after.
    selfcheck.finish_complete_attempts(db, campaign_id)
    people = participation.compute_eligibility(
        db, campaign, today=date.fromisoformat(local_moment(moment)[:10]))
    participation.write_eligibility(db, campaign_id, people)
    now = moment.astimezone(timezone.utc).isoformat(timespec="seconds") if moment else utcnow()
    db.execute("UPDATE campaigns SET status = 'closed', closed_at = ?, frozen_at = ?,"
               " updated_at = ?, version = version + 1 WHERE campaign_id = ?",
               [now, now, now, campaign_id])
    audit.record(db, actor, "campaign_close", target=str(campaign_id),
                 detail={"eligible": sum(p["eligible"] for p in people.values())})


def close_due_campaigns(db, now: datetime | None = None) -> list[int]:
    """Close (and freeze) every open campaign whose closing time has passed at ``now``
    (default: the clock), which also dates the closing; for the scheduler. Idempotent."""
    closed = []
    for (campaign_id,) in db.execute("SELECT campaign_id FROM campaigns WHERE status = 'open'"
                                     " AND closes_at <= ?", [local_moment(now)]).fetchall():
        with transaction(db):
            if participation.campaign_row(db, campaign_id)["status"] == "open":
                _close(db, None, campaign_id, None, now)
                closed.append(campaign_id)
    return closed


@scheduler.register("close_due_campaigns")
def _close_due(db, settings, now=None) -> dict:
    """Due work: campaigns whose closing time has passed are closed and frozen."""
    return {"closed": close_due_campaigns(db, now)}


def invite_started_campaigns(db, settings=None, now: datetime | None = None) -> dict:
    """Queue the invitations of every open campaign whose opening time has come at ``now``
    (default: the clock) to those addressed who have none yet; return {"invited": n}. For
    campaigns opened before their opening time, whose invitations wait for it; once they
    are queued, the dedupe key makes every later run a no-op, so it is idempotent however
    often it runs, in however many processes, and after a restart. Read first, without the
    write lock: a minute with nobody to invite writes nothing."""
    moment = local_moment(now)
    invited = 0
    for campaign in db.execute_returning_dicts(
            "SELECT * FROM campaigns WHERE status = 'open' AND opens_at <= ? AND closes_at > ?"
            " ORDER BY campaign_id", [moment, moment]):
        if not uninvited(db, campaign["campaign_id"]):
            continue
        with transaction(db):
            # Again inside the write lock: the campaign may have closed meanwhile.
            campaign = participation.campaign_row(db, campaign["campaign_id"])
            if campaign["status"] == "open":
                invited += queue_invitations(db, campaign, now=now, settings=settings)
    return {"invited": invited}


@scheduler.register("campaign_invitations")
def _invite_started(db, settings, now=None) -> dict:
    """Due work: the invitations of campaigns whose opening time has come."""
    return invite_started_campaigns(db, settings, now)
