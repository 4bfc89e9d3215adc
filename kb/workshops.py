"""Trainers' workshops: a set of published cases in order, with notes and discussion
questions, and what is made from it — the handout, its Markdown, a ○× quiz with an
answer sheet, and a CSV for Excel.

A workshop belongs to the trainer who made it. Shared, other trainers may read and copy
it; only its owner changes it.
"""

import json

from kb import audit, checklist, dates
from kb.cases import CASE_DATE, INCIDENT_TYPE_LABELS, KIND_LABELS, ORIGIN_LABELS
from kb.db import transaction, utcnow
from kb.exceptions import Conflict, Forbidden, Invalid, NotFound
from kb.quiz import build_quiz, code_order as _code_order, falsify  # noqa: F401 (the workshop quiz)
from kb.rendering import case_day, excel_csv
from kb.roles import require_role

DEFAULT_QUESTIONS = (
    "自分の課で起こりうるか",
    "どの手順で防げたか",
    "チェックリストのどの項目に当たるか",
    "明日から何を変えるか",
)
TITLE_LIMIT = 120
NOTE_LIMIT = 2000
QUESTION_LIMIT = 200
MAX_QUESTIONS = 10
MAX_CASES = 30


def _row(db, workshop_id: int) -> dict:
    rows = db.execute_returning_dicts(
        "SELECT w.*, u.display_name AS owner_name, d.name AS audience_name FROM workshops w"
        " JOIN users u ON u.user_id = w.owner_id"
        " LEFT JOIN departments d ON d.department_id = w.audience_department_id"
        " WHERE w.workshop_id = ?", [workshop_id])
    if not rows:
        raise NotFound(f"workshop {workshop_id}")
    row = rows[0]
    row["questions"] = json.loads(row["questions"])
    return row


def get_workshop(db, actor, workshop_id: int) -> dict:
    """The workshop if ``actor`` may read it (its owner, or any trainer when shared)."""
    require_role(actor, "trainer")
    workshop = _row(db, workshop_id)
    if workshop["owner_id"] != actor.user_id and not workshop["shared"]:
        raise NotFound(f"workshop {workshop_id}")
    workshop["can_edit"] = workshop["owner_id"] == actor.user_id
    return workshop


def _editable(db, actor, workshop_id: int, version=None) -> dict:
    """The workshop if ``actor`` owns it. Conflict when it changed since ``version``, the
    ``workshops.version`` the owner's page showed (None skips the check); called inside
    the write transaction, so the version compared is the one about to be replaced."""
    workshop = get_workshop(db, actor, workshop_id)
    if not workshop["can_edit"]:
        raise Forbidden(f"workshop {workshop_id} belongs to user {workshop['owner_id']}")
    if version is not None and str(version) != str(workshop["version"]):
        raise Conflict(f"workshop {workshop_id} is at version {workshop['version']}")
    return workshop


def _bump(db, workshop_id: int) -> None:
    # Every change to a workshop or its cases makes the owner's other open pages stale.
    db.execute("UPDATE workshops SET version = version + 1, updated_at = ? WHERE workshop_id = ?",
               [utcnow(), workshop_id])


def list_workshops(db, actor) -> dict[str, list[dict]]:
    """{"own": the actor's workshops, "shared": other trainers' shared ones}, newest first."""
    require_role(actor, "trainer")
    rows = db.execute_returning_dicts(
        "SELECT w.*, u.display_name AS owner_name,"
        " (SELECT count(*) FROM workshop_cases k WHERE k.workshop_id = w.workshop_id) AS case_count"
        " FROM workshops w JOIN users u ON u.user_id = w.owner_id"
        " WHERE w.owner_id = ? OR w.shared = 1 ORDER BY w.updated_at DESC, w.workshop_id DESC",
        [actor.user_id])
    return {"own": [r for r in rows if r["owner_id"] == actor.user_id],
            "shared": [r for r in rows if r["owner_id"] != actor.user_id]}


def _check(db, title: str, held_on: str, audience_department_id, questions) -> dict:
    errors: dict[str, list[str]] = {}
    title = (title or "").strip()
    if not title:
        errors["title"] = ["研修の名前を入力してください。"]
    elif len(title) > TITLE_LIMIT:
        errors["title"] = [f"研修の名前は{TITLE_LIMIT}文字以内にしてください。"]
    held = None
    try:
        held = dates.parse_day(held_on)
    except dates.DateError as error:
        errors["held_on"] = [str(error)]
    audience = None
    if audience_department_id not in (None, "", 0, "0"):
        try:
            audience = int(audience_department_id)
        except (TypeError, ValueError):
            audience = -1
        if not db.execute("SELECT 1 FROM departments WHERE department_id = ?", [audience]).fetchone():
            errors["audience_department_id"] = ["対象の所属は一覧から選んでください。"]
    questions = [q.strip() for q in (questions or []) if q and q.strip()]
    if len(questions) > MAX_QUESTIONS:
        errors["questions"] = [f"問いは{MAX_QUESTIONS}個までにしてください。"]
    elif any(len(q) > QUESTION_LIMIT for q in questions):
        errors["questions"] = [f"問いは1つ{QUESTION_LIMIT}文字以内にしてください。"]
    if errors:
        raise Invalid(errors)
    return {"title": title, "held_on": held, "audience_department_id": audience,
            "questions": json.dumps(questions, ensure_ascii=False)}


def create_workshop(db, actor, *, title: str, held_on: str = "",
                    audience_department_id=None) -> int:
    require_role(actor, "trainer")
    values = _check(db, title, held_on, audience_department_id, DEFAULT_QUESTIONS)
    now = utcnow()
    with transaction(db):
        workshop_id = db["workshops"].insert({**values, "owner_id": actor.user_id, "shared": 0,
                                              "created_at": now, "updated_at": now}).last_pk
        audit.record(db, actor, "workshop_create", target=str(workshop_id))
    return workshop_id


def update_workshop(db, actor, workshop_id: int, *, title: str, held_on: str,
                    audience_department_id, questions, shared: bool, version=None) -> None:
    """Change the name, date, audience, questions and sharing. Raises Invalid (by field)
    for malformed input and Conflict when the workshop changed since ``version``; nothing
    is written in either case."""
    _editable(db, actor, workshop_id)
    values = _check(db, title, held_on, audience_department_id, questions)
    with transaction(db):
        _editable(db, actor, workshop_id, version)
        db["workshops"].update(workshop_id, {**values, "shared": int(bool(shared))})
        _bump(db, workshop_id)
        audit.record(db, actor, "workshop_update", target=str(workshop_id))


def add_case(db, actor, workshop_id: int, case_id: int) -> bool:
    """Add a published case at the end; False if it is there already.

    Not version-checked: it only adds (from a search or case page, not the workshop's own
    page) and overwrites nothing; it does raise the version, so the owner's open workshop
    pages are stale afterwards."""
    _editable(db, actor, workshop_id)
    status = db.execute("SELECT status FROM cases WHERE case_id = ?", [case_id]).fetchone()
    if status is None or status[0] != "published":
        raise Invalid({"case_id": ["研修に使えるのは公開された事例だけです。"]})
    if db.execute("SELECT 1 FROM workshop_cases WHERE workshop_id = ? AND case_id = ?",
                  [workshop_id, case_id]).fetchone():
        return False
    count = db.execute("SELECT count(*) FROM workshop_cases WHERE workshop_id = ?",
                       [workshop_id]).fetchone()[0]
    if count >= MAX_CASES:
        raise Invalid({"case_id": [f"1つの研修に入れられる事例は{MAX_CASES}件までです。"]})
    with transaction(db):
        db["workshop_cases"].insert({"workshop_id": workshop_id, "case_id": case_id,
                                     "position": count, "note": ""})
        _bump(db, workshop_id)
        audit.record(db, actor, "workshop_add_case", case_id=case_id, target=str(workshop_id))
    return True


def remove_case(db, actor, workshop_id: int, case_id: int, *, version=None) -> None:
    """Take a case out of the workshop; Conflict when the workshop changed since ``version``."""
    _editable(db, actor, workshop_id)
    with transaction(db):
        _editable(db, actor, workshop_id, version)
        db.execute("DELETE FROM workshop_cases WHERE workshop_id = ? AND case_id = ?",
                   [workshop_id, case_id])
        audit.record(db, actor, "workshop_remove_case", case_id=case_id, target=str(workshop_id))
        _renumber(db, workshop_id, [r[0] for r in db.execute(
            "SELECT case_id FROM workshop_cases WHERE workshop_id = ? ORDER BY position",
            [workshop_id])])


def move_case(db, actor, workshop_id: int, case_id: int, step: int, *, version=None) -> None:
    """Move a case one place up (step -1) or down (+1). Conflict when the workshop changed
    since ``version``: "up" means up from the order the owner saw."""
    _editable(db, actor, workshop_id)
    with transaction(db):
        _editable(db, actor, workshop_id, version)
        order = [r[0] for r in db.execute(
            "SELECT case_id FROM workshop_cases WHERE workshop_id = ? ORDER BY position",
            [workshop_id])]
        if case_id not in order:
            raise NotFound(f"case {case_id} in workshop {workshop_id}")
        index = order.index(case_id)
        target = min(max(index + step, 0), len(order) - 1)
        order.insert(target, order.pop(index))
        _renumber(db, workshop_id, order)
        audit.record(db, actor, "workshop_move_case", case_id=case_id, target=str(workshop_id))


def _renumber(db, workshop_id: int, order: list[int]) -> None:
    for position, case_id in enumerate(order):
        db.execute("UPDATE workshop_cases SET position = ? WHERE workshop_id = ? AND case_id = ?",
                   [position, workshop_id, case_id])
    _bump(db, workshop_id)


def set_note(db, actor, workshop_id: int, case_id: int, note: str, *, version=None) -> None:
    """Write the note of one case. Raises Invalid for an over-long note and Conflict when
    the workshop changed since ``version``; nothing is written in either case."""
    _editable(db, actor, workshop_id)
    note = (note or "").strip()
    if len(note) > NOTE_LIMIT:
        raise Invalid({"note": [f"メモは{NOTE_LIMIT:,}文字以内にしてください。"]})
    with transaction(db):
        _editable(db, actor, workshop_id, version)
        db.execute("UPDATE workshop_cases SET note = ? WHERE workshop_id = ? AND case_id = ?",
                   [note, workshop_id, case_id])
        audit.record(db, actor, "workshop_note", case_id=case_id, target=str(workshop_id))
        _bump(db, workshop_id)


def copy_workshop(db, actor, workshop_id: int) -> int:
    """A copy owned by ``actor`` (of their own workshop or a shared one)."""
    workshop = get_workshop(db, actor, workshop_id)
    now = utcnow()
    with transaction(db):
        new_id = db["workshops"].insert({
            "title": f"{workshop['title']}（コピー）"[:TITLE_LIMIT], "held_on": None,
            "audience_department_id": workshop["audience_department_id"],
            "owner_id": actor.user_id, "shared": 0,
            "questions": json.dumps(workshop["questions"], ensure_ascii=False),
            "created_at": now, "updated_at": now}).last_pk
        db.execute("INSERT INTO workshop_cases (workshop_id, case_id, position, note)"
                   " SELECT ?, case_id, position, note FROM workshop_cases WHERE workshop_id = ?",
                   [new_id, workshop_id])
        audit.record(db, actor, "workshop_copy", target=str(new_id),
                     detail={"from": workshop_id})
    return new_id


def workshop_cases(db, actor, workshop_id: int) -> list[dict]:
    """The workshop's cases in order, with everything the handout shows. A case that has
    since left publication is dropped from what is shown."""
    get_workshop(db, actor, workshop_id)
    rows = db.execute_returning_dicts(
        f"SELECT c.*, {CASE_DATE} AS case_date,"
        " k.note, k.position, d.name AS department_label FROM workshop_cases k"
        " JOIN cases c USING (case_id) LEFT JOIN departments d ON d.department_id = c.department_id"
        " WHERE k.workshop_id = ? AND c.status = 'published' ORDER BY k.position", [workshop_id])
    items = {item["code"]: item for item in checklist.current_items(db)}
    for row in rows:
        for key in ("data_items", "causes", "whys", "factors"):
            row[key] = json.loads(row[key] or "[]")
        row["countermeasures"] = [dict(m, item_codes=(m["codes"] or "").split()) for m in db.query(
            "SELECT m.text, m.status,"
            " (SELECT group_concat(item_code, ' ') FROM countermeasure_checklist_items l"
            "  WHERE l.countermeasure_id = m.countermeasure_id) AS codes"
            " FROM countermeasures m WHERE m.case_id = ? ORDER BY position", [row["case_id"]])]
        codes = {code for m in row["countermeasures"] for code in m["item_codes"]}
        codes |= {r[0] for r in db.execute(
            "SELECT item_code FROM case_checklist_items WHERE case_id = ?", [row["case_id"]])}
        row["items"] = [items[code] for code in sorted(codes, key=_code_order) if code in items]
        row["reporter_id"] = None  # a handout never names a reporter
    return rows



def what_happened(case: dict) -> list[str]:
    """Causes as a handout lists them: the published causes, or the report's whys and root cause."""
    if case["origin"] == "external":
        return case["causes"]
    return [why for why in case["whys"] if why] + (
        [f"根本原因：{case['root_cause']}"] if case["root_cause"] else [])


# --- outputs ------------------------------------------------------------------------------

def handout_markdown(workshop: dict, cases: list[dict]) -> str:
    """The handout as Markdown, for editing in another tool."""
    lines = [f"# {workshop['title']}", ""]
    if workshop["held_on"]:
        lines.append(f"- 日付：{workshop['held_on']}")
    lines += [f"- 対象：{workshop['audience_name'] or '全庁'}", ""]
    if not cases:
        lines += ["（この研修にはまだ事例がありません。）", ""]
    for number, case in enumerate(cases, start=1):
        lines += [f"## 事例{number}　{case['title']}", ""]
        where = (f"{case['prefecture'] or ''}{case['municipality']}" if case["origin"] == "external"
                 else case["department_label"] or "庁内")
        kind = INCIDENT_TYPE_LABELS.get(case["incident_type"]) or KIND_LABELS[case["kind"]]
        lines += [f"*{ORIGIN_LABELS[case['origin']]}・{kind}・{where}・{case_day(case)}*", ""]
        lines += ["### 何が起きたか", "", case["summary"] or "（記載なし）", ""]
        causes = what_happened(case)
        lines += ["### 原因", ""] + ([f"- {c}" for c in causes] or ["（記載なし）"]) + [""]
        lines += ["### 再発防止策", ""] + (
            [f"- {m['text']}" for m in case["countermeasures"]] or ["（記載なし）"]) + [""]
        if case["items"]:
            lines += ["### 関係するチェックリストの項目", ""]
            lines += [f"- {item['code']} {item['text']}" for item in case["items"]] + [""]
        if case["lesson"]:
            lines += [f"**教訓：** {case['lesson']}", ""]
        if case["origin"] == "external" and case["source_url"]:
            lines += [f"出典：{case['source_title'] or case['source_url']} <{case['source_url']}>", ""]
        if case["note"]:
            lines += [f"> メモ：{case['note']}", ""]
        if workshop["questions"]:
            lines += ["### 話し合うこと", ""]
            lines += [f"{i}. {q}" for i, q in enumerate(workshop["questions"], start=1)] + [""]
    return "\n".join(lines).rstrip() + "\n"


def cases_csv(cases: list[dict]) -> bytes:
    """The workshop's cases as CSV that Excel opens as it is (UTF-8 with BOM, CRLF)."""
    return excel_csv(
        ["順番", "事例番号", "件名", "出所", "自治体・所属", "発生日", "種別", "何が起きたか",
         "原因", "再発防止策", "教訓", "出典", "メモ"],
        [[number, case["external_id"] or case["case_id"], case["title"],
          ORIGIN_LABELS[case["origin"]],
          case["municipality"] if case["origin"] == "external" else (case["department_label"] or ""),
          case["occurred_on"] or case["discovered_on"] or "",
          INCIDENT_TYPE_LABELS.get(case["incident_type"], ""), case["summary"],
          "\n".join(what_happened(case)), "\n".join(m["text"] for m in case["countermeasures"]),
          case["lesson"], case["source_url"] or "", case["note"]]
         for number, case in enumerate(cases, start=1)])
