"""Filing reports: the near-miss quick report, the incident template, and drafts.

A report is handled as a plain dict (the shape ``report_from_form`` and
``report_from_case`` return): text as typed, lists for whys, data items, factors and
checklist codes, and a list of countermeasure dicts. ``clean_report`` validates it into
column values, with Japanese messages keyed by form field name. A draft saves whatever
is well-formed; submitting also requires the fields the template asks for.
"""

import json
import re
import unicodedata

from kb import audit, checklist, dates, pii
from kb.cases import (COUNTERMEASURE_STATUS_LABELS, COUNTERMEASURE_TYPE_LABELS, INCIDENT_TYPES,
                      KINDS, RULE_STATUS_LABELS, TASKS, require_readable)
from kb.db import mark_changed, transaction, utcnow
from kb.exceptions import Conflict, Forbidden, Invalid, NotFound
from kb.roles import require_account
from kb.statutory import DISCLOSURE_LABELS


FACTOR_LABELS = {
    "man": "人（Man）", "machine": "機器・システム（Machine）",
    "media": "手順・媒体（Media）", "management": "管理（Management）",
}
RULE_STATUSES = tuple(RULE_STATUS_LABELS)
COUNTERMEASURE_TYPES = tuple(COUNTERMEASURE_TYPE_LABELS)
COUNTERMEASURE_STATUSES = tuple(COUNTERMEASURE_STATUS_LABELS)
MAX_WHYS = 5
MAX_COUNTERMEASURES = 20
MAX_DATA_ITEMS = 20
MAX_AFFECTED = 100_000_000

TEXT_LIMITS = {
    "title": 120, "summary": 4000, "how_found": 2000, "immediate_action": 2000,
    "potential_outcome": 2000, "prevention_idea": 2000, "channel": 60,
    "secondary_damage": 1000, "root_cause": 500, "lesson": 200, "disclosure_reason": 500,
}
WHY_LIMIT = 300
COUNTERMEASURE_LIMIT = 500
DATA_ITEM_LIMIT = 40

FIELD_LABELS = {
    "title": "件名", "summary": "何が起きたか", "how_found": "どう気づいたか",
    "immediate_action": "直後の対応", "potential_outcome": "起こりえたこと",
    "prevention_idea": "防ぐためのアイデア", "channel": "経路", "secondary_damage": "二次被害",
    "root_cause": "根本原因", "lesson": "教訓", "disclosure_reason": "非公表の理由",
    "occurred_on": "発生日", "discovered_on": "発見日", "task": "作業",
    "incident_type": "種別", "rule_status": "ルールの状況", "affected_count": "影響を受けた人数",
    "data_items": "漏えい等した情報の項目", "countermeasures": "再発防止策",
}
NEAR_MISS_LABELS = {"summary": "何が起きそうになったか", "how_found": "どうして気づいたか",
                    "occurred_on": "起きそうになった日"}

REQUIRED = {
    "near_miss": ("summary", "how_found", "task"),
    "incident": ("title", "summary", "how_found", "immediate_action", "discovered_on", "task",
                 "incident_type", "rule_status", "root_cause"),
}
TEXT_COLUMNS = tuple(TEXT_LIMITS)
FLAG_COLUMNS = ("sensitive_data", "property_damage_risk", "unlawful_purpose_risk",
                "ordinance_sensitive", "anonymous")

# A root cause made only of these says who to blame, not what to fix.
VAGUE_CAUSES = ("注意不足", "確認不足", "不注意", "確認漏れ", "確認ミス", "気をつける", "気を付ける",
                "注意する", "うっかり", "ケアレスミス", "思い込み", "意識不足", "意識の欠如",
                "意識が低い", "徹底不足", "周知不足", "認識不足", "ミス", "ヒューマンエラー")
FILLER = re.compile(r"[\s、。・,.!！?？「」『』()（）]|による|のため|ため|こと|した|して|が|の|を|に|で|と|も|は")


CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b\u202a-\u202e\u2066-\u2069]")


def clean_text(value) -> str:
    """Typed text without control characters (a pasted NUL, a bell, bidi overrides);
    new lines and tabs stay."""
    return CONTROL_CHARACTERS.sub("", (value or "").replace("\r\n", "\n")).strip()


def label_of(field: str, kind: str) -> str:
    """The Japanese name of a form field (``whys-2``, ``countermeasures-0-text`` included)."""
    if field.startswith("whys-"):
        return f"なぜ{int(field.split('-')[1]) + 1}"
    if field.startswith("countermeasures-"):
        return f"再発防止策{int(field.split('-')[1]) + 1}"
    if field.startswith("data_items-"):
        return "漏えい等した情報の項目"
    if field.startswith("causes-"):
        return f"原因{int(field.split('-')[1]) + 1}"
    if kind == "near_miss" and field in NEAR_MISS_LABELS:
        return NEAR_MISS_LABELS[field]
    return FIELD_LABELS.get(field, field)


# --- the report dict ------------------------------------------------------------

def empty_report(kind: str) -> dict:
    return {
        "kind": kind, "version": None, **{column: "" for column in TEXT_COLUMNS},
        "occurred_on": "", "discovered_on": "", "task": "", "incident_type": "",
        "rule_status": "", "disclosure": "", "affected_count": "", "data_items": [],
        "factors": [], "whys": [""] * MAX_WHYS, "checklist_items": [], "causes": [],
        **{flag: False for flag in FLAG_COLUMNS}, "countermeasures": [],
    }


def _split_items(text: str) -> list[str]:
    return [item.strip() for item in re.split(r"[\n、,，・]", text or "") if item.strip()]


def report_from_form(form, kind: str) -> dict:
    """The report a submitted form describes; ``form`` has ``get`` and ``getlist``."""
    report = empty_report(kind)
    for column in TEXT_COLUMNS + ("occurred_on", "discovered_on", "task", "incident_type",
                                  "rule_status", "disclosure", "affected_count"):
        report[column] = clean_text(form.get(column))
    for flag in FLAG_COLUMNS:
        report[flag] = form.get(flag) in ("1", "y", "on", "true")
    report["version"] = form.get("version") or None
    report["data_items"] = _split_items(clean_text(form.get("data_items")))
    report["factors"] = form.getlist("factors")
    report["checklist_items"] = [code.strip() for code in form.getlist("checklist_items")
                                 if code.strip()]
    report["whys"] = [clean_text(form.get(f"whys-{i}")) for i in range(MAX_WHYS)]
    rows = min(_int(form.get("countermeasure_rows"), 0), MAX_COUNTERMEASURES)
    for i in range(rows):
        prefix = f"countermeasures-{i}-"
        row = {
            "countermeasure_id": _int(form.get(prefix + "id"), None),
            "text": clean_text(form.get(prefix + "text")),
            "type": form.get(prefix + "type") or "",
            "owner_department_id": form.get(prefix + "owner_department_id") or "",
            "due_on": (form.get(prefix + "due_on") or "").strip(),
            "status": form.get(prefix + "status") or "planned",
            "item_codes": _split_codes(form.get(prefix + "item_codes", "")),
        }
        if row["text"] or row["type"] or row["due_on"] or row["item_codes"] \
                or row["countermeasure_id"]:
            report["countermeasures"].append(row)
    return report


def _split_codes(text: str) -> list[str]:
    return [code for code in re.split(r"[\s,、，]+", unicodedata.normalize("NFKC", text or ""))
            if code]


def _int(value, default):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def report_from_case(db, case_id: int) -> dict:
    """The stored report of a case, in the shape of ``report_from_form``."""
    rows = db.execute_returning_dicts("SELECT * FROM cases WHERE case_id = ?", [case_id])
    if not rows:
        raise NotFound(f"case {case_id}")
    case = rows[0]
    report = empty_report(case["kind"])
    for column in TEXT_COLUMNS + ("occurred_on", "discovered_on", "task", "incident_type",
                                  "rule_status", "disclosure"):
        report[column] = case[column] or ""
    for flag in FLAG_COLUMNS:
        report[flag] = bool(case[flag])
    report["affected_count"] = "" if case["affected_count"] is None else str(case["affected_count"])
    report["version"] = case["version"]
    report["data_items"] = json.loads(case["data_items"])
    report["factors"] = json.loads(case["factors"])
    report["causes"] = json.loads(case["causes"])
    whys = json.loads(case["whys"])
    report["whys"] = whys + [""] * (MAX_WHYS - len(whys))
    report["checklist_items"] = [row[0] for row in db.execute(
        "SELECT item_code FROM case_checklist_items WHERE case_id = ? ORDER BY item_code",
        [case_id])]
    for row in db.query("SELECT * FROM countermeasures WHERE case_id = ? ORDER BY position",
                        [case_id]):
        report["countermeasures"].append({
            "countermeasure_id": row["countermeasure_id"], "text": row["text"],
            "type": row["type"] or "", "due_on": row["due_on"] or "", "status": row["status"],
            "owner_department_id": str(row["owner_department_id"] or ""),
            "item_codes": [r[0] for r in db.execute(
                "SELECT item_code FROM countermeasure_checklist_items"
                " WHERE countermeasure_id = ? ORDER BY item_code", [row["countermeasure_id"]])],
        })
    return report


# --- validation -----------------------------------------------------------------

def _date(value: str, errors: dict, field: str, *, future_ok=False) -> str | None:
    """The ISO day typed as ``kb.dates.parse_day`` reads it (2026/12/01, 令和8年12月1日 …),
    None when blank; else None with the message in ``errors[field]``."""
    try:
        day = dates.parse_day(value)
    except dates.DateError as error:
        errors[field] = [str(error)]
        return None
    if day and not future_ok and day > dates.office_today().isoformat():
        errors[field] = ["未来の日付は入力できません。"]
        return None
    return day


def is_vague_root_cause(text: str) -> bool:
    """True when the root cause names only inattention (「確認不足」「気をつける」 …)."""
    rest = unicodedata.normalize("NFKC", text or "")
    if not rest.strip():
        return False
    found = False
    for phrase in sorted(VAGUE_CAUSES, key=len, reverse=True):
        if phrase in rest:
            found = True
            rest = rest.replace(phrase, "")
    return found and len(FILLER.sub("", rest)) <= 3


def clean_report(db, report: dict, *, submitting: bool) -> tuple[dict, list, list, dict]:
    """Validate a report: (column values, countermeasure rows, checklist codes, errors)."""
    kind = report["kind"]
    errors: dict[str, list[str]] = {}
    values: dict = {}
    for column, limit in TEXT_LIMITS.items():
        text = report.get(column) or ""
        if len(text) > limit:
            errors[column] = [f"{label_of(column, kind)}は{limit:,}文字以内にしてください"
                              f"（いま{len(text):,}文字）。"]
        values[column] = text
    values["occurred_on"] = _date(report["occurred_on"], errors, "occurred_on")
    values["discovered_on"] = _date(report["discovered_on"], errors, "discovered_on")
    if values["occurred_on"] and values["discovered_on"] \
            and values["discovered_on"] < values["occurred_on"]:
        errors["discovered_on"] = ["発見日が発生日より前になっています。"]
    for column, allowed in (("task", TASKS), ("incident_type", INCIDENT_TYPES),
                            ("rule_status", RULE_STATUSES),
                            ("disclosure", tuple(DISCLOSURE_LABELS))):
        value = report.get(column) or ""
        if value and value not in allowed:
            errors[column] = [f"{label_of(column, kind)}は一覧から選んでください。"]
        values[column] = value or None
    count = (report.get("affected_count") or "").replace(",", "")
    values["affected_count"] = None
    if count:
        number = _int(unicodedata.normalize("NFKC", count), None)
        if number is None or number < 0:
            errors["affected_count"] = ["人数は0以上の整数で入力してください。"]
        elif number > MAX_AFFECTED:
            errors["affected_count"] = ["人数が大きすぎます。確認してください。"]
        else:
            values["affected_count"] = number
    items = report.get("data_items") or []
    if len(items) > MAX_DATA_ITEMS or any(len(item) > DATA_ITEM_LIMIT for item in items):
        errors["data_items"] = [f"項目は{MAX_DATA_ITEMS}個まで、1項目{DATA_ITEM_LIMIT}文字以内にしてください。"]
    values["data_items"] = json.dumps(items, ensure_ascii=False)
    factors = report.get("factors") or []
    if set(factors) - set(FACTOR_LABELS):
        errors["factors"] = ["要因は一覧から選んでください。"]
    values["factors"] = json.dumps([f for f in FACTOR_LABELS if f in factors])
    whys = [why for why in (report.get("whys") or [])[:MAX_WHYS]]
    for i, why in enumerate(whys):
        if len(why) > WHY_LIMIT:
            errors[f"whys-{i}"] = [f"{WHY_LIMIT}文字以内にしてください。"]
    while whys and not whys[-1]:
        whys.pop()
    values["whys"] = json.dumps(whys, ensure_ascii=False)
    for flag in FLAG_COLUMNS:
        values[flag] = int(bool(report.get(flag)))
    if kind == "near_miss":
        values["anonymous"] = int(bool(report.get("anonymous")))
    else:
        values["anonymous"] = 0

    known = checklist.known_codes(db)
    unknown = [code for code in report.get("checklist_items") or [] if code not in known]
    if unknown:
        errors["checklist_items"] = [f"チェックリストにない項目コードです：{'、'.join(unknown)}"]
    codes = sorted(set(report.get("checklist_items") or []) & known)

    countermeasures = []
    for i, row in enumerate(report.get("countermeasures") or []):
        prefix = f"countermeasures-{i}-"
        if not row["text"]:
            errors[prefix + "text"] = ["対策の内容を入力してください（不要な行は内容を空にして削除を選んでください）。"]
        elif len(row["text"]) > COUNTERMEASURE_LIMIT:
            errors[prefix + "text"] = [f"{COUNTERMEASURE_LIMIT}文字以内にしてください。"]
        if row["type"] and row["type"] not in COUNTERMEASURE_TYPES:
            errors[prefix + "type"] = ["対策の種類は一覧から選んでください。"]
        if row["status"] not in COUNTERMEASURE_STATUSES:
            errors[prefix + "status"] = ["進み具合は一覧から選んでください。"]
        owner = _int(row["owner_department_id"], None) if row["owner_department_id"] else None
        if row["owner_department_id"] and (owner is None or not db.execute(
                "SELECT 1 FROM departments WHERE department_id = ?", [owner]).fetchone()):
            errors[prefix + "owner_department_id"] = ["担当課は一覧から選んでください。"]
        due = _date(row["due_on"], errors, prefix + "due_on", future_ok=True)
        bad_codes = [code for code in row["item_codes"] if code not in known]
        if bad_codes:
            errors[prefix + "item_codes"] = [f"チェックリストにない項目コードです：{'、'.join(bad_codes)}"]
        countermeasures.append({
            "countermeasure_id": row.get("countermeasure_id"), "position": i,
            "text": row["text"], "type": row["type"] or None, "owner_department_id": owner,
            "due_on": due, "status": row["status"] if row["status"] in COUNTERMEASURE_STATUSES
            else "planned", "item_codes": sorted(set(row["item_codes"]) & known),
        })

    if submitting:
        for field in REQUIRED[kind]:
            if not values.get(field) and field not in errors:
                errors[field] = [f"{label_of(field, kind)}を入力してください。"]
        if kind == "incident":
            if not countermeasures and "countermeasures" not in errors:
                errors["countermeasures"] = ["再発防止策を一つ以上入力してください。"]
            if values["disclosure"] == "none" and not values["disclosure_reason"]:
                errors["disclosure_reason"] = ["非公表とする理由を入力してください。"]
    if kind == "near_miss" and not values["title"]:
        first_line = (values["summary"] or "").split("\n")[0]
        values["title"] = first_line[:40] + ("…" if len(first_line) > 40 else "")
    return values, countermeasures, codes, errors


def warnings_for(report: dict) -> dict[str, list[str]]:
    """Advice that does not block saving: a root cause that only names inattention."""
    if report["kind"] == "incident" and is_vague_root_cause(report.get("root_cause", "")):
        return {"root_cause": [
            "「注意不足」「確認不足」だけでは、対策で直せる原因になりません。"
            "なぜ注意や確認が働かなかったのか（手順・仕組み・環境）をもう一段掘り下げてください。"]}
    return {}


# --- personal data in a report ------------------------------------------------------

def report_texts(report: dict) -> list[tuple[str, str]]:
    """(field name, text) for every free-text field of a report."""
    texts = [(column, report.get(column) or "") for column in TEXT_COLUMNS]
    texts += [(f"whys-{i}", why) for i, why in enumerate(report.get("whys") or [])]
    texts += [(f"data_items-{i}", item) for i, item in enumerate(report.get("data_items") or [])]
    texts += [(f"causes-{i}", cause) for i, cause in enumerate(report.get("causes") or [])]
    texts += [(f"countermeasures-{i}-text", row["text"])
              for i, row in enumerate(report.get("countermeasures") or [])]
    return [(field, text) for field, text in texts if text]


def report_findings(report: dict, confirmed=frozenset()) -> dict[str, list]:
    """Personal-data findings by field, leaving out (field, text) pairs in ``confirmed``."""
    findings = {}
    for field, text in report_texts(report):
        found = [f for f in pii.scan(text) if (field, f.text) not in confirmed]
        if found:
            findings[field] = found
    return findings


def mask_in_report(report: dict, field: str, start: int, end: int) -> bool:
    """Mask the finding at [start, end) of ``field`` in the report dict; False if it is gone."""
    texts = dict(report_texts(report))
    text = texts.get(field, "")
    match = next((f for f in pii.scan(text) if f.start == start and f.end == end), None)
    if match is None:
        return False
    masked = pii.mask(text, start, end, match.text)
    if field.startswith("whys-"):
        report["whys"][int(field.split("-")[1])] = masked
    elif field.startswith(("data_items-", "causes-")):
        name, index = field.split("-")
        report[name][int(index)] = masked
    elif field.startswith("countermeasures-"):
        report["countermeasures"][int(field.split("-")[1])]["text"] = masked
    else:
        report[field] = masked
    return True


# --- saving ---------------------------------------------------------------------------

def _case_row(db, case_id: int) -> dict:
    rows = db.execute_returning_dicts("SELECT * FROM cases WHERE case_id = ?", [case_id])
    if not rows:
        raise NotFound(f"case {case_id}")
    return rows[0]


def editable_case(db, actor, case_id: int) -> dict:
    """The draft ``actor`` reported. NotFound for a case the actor may not read (so the
    answer does not reveal that it exists); Forbidden for one they read but may not edit
    (someone else's, or past draft)."""
    require_readable(db, actor, case_id)
    case = _case_row(db, case_id)
    if case["origin"] != "internal" or case["reporter_id"] != actor.user_id \
            or case["status"] != "draft":
        raise Forbidden(f"user {actor.user_id} may not edit case {case_id}")
    return case


def report_for_editing(db, actor, case_id: int) -> dict:
    """The reporter's own draft as a report dict; the read is written to the audit log
    (an unpublished case), without a name when the report is anonymous."""
    case = editable_case(db, actor, case_id)
    audit.record(db, actor, "case_read", case_id=case_id, anonymous=bool(case["anonymous"]))
    return report_from_case(db, case_id)


def save_report(db, actor, report: dict, *, case_id: int | None = None) -> int:
    """Save a draft: create it (``case_id`` None) or update the reporter's own draft.

    Raises Invalid (messages by field) for malformed input and Conflict when the draft
    was saved elsewhere since ``report["version"]``. Nothing is written in either case.
    """
    require_account(actor)  # every active account files; other roles only add powers
    if report["kind"] not in KINDS:
        raise Invalid({"kind": ["報告の種類が正しくありません。"]})
    values, countermeasures, codes, errors = clean_report(db, report, submitting=False)
    if errors:
        raise Invalid(errors)
    now = utcnow()
    with transaction(db):
        if case_id is None:
            case_id = db["cases"].insert({
                **values, "kind": report["kind"], "origin": "internal", "status": "draft",
                "department_id": actor.department_id, "reporter_id": actor.user_id,
                "created_at": now, "updated_at": now, "version": 1,
            }).last_pk
            action = "report_create"
        else:
            case = editable_case(db, actor, case_id)
            if str(case["version"]) != str(report.get("version")):
                raise Conflict(f"case {case_id} is at version {case['version']}")
            db["cases"].update(case_id, {**values, "updated_at": now,
                                         "version": case["version"] + 1})
            action = "report_update"
        write_links(db, case_id, countermeasures, codes, now)
        mark_changed(db, case_id)
        audit.record(db, actor, action, case_id=case_id, anonymous=bool(values["anonymous"]),
                     detail={"kind": report["kind"]})
    return case_id


def write_links(db, case_id: int, countermeasures: list, codes: list, now: str) -> None:
    """Make the case's countermeasures (and their checklist links) and item links match."""
    stored = {row[0] for row in db.execute(
        "SELECT countermeasure_id FROM countermeasures WHERE case_id = ?", [case_id])}
    kept = set()
    for row in countermeasures:
        columns = {key: row[key] for key in ("position", "text", "type", "owner_department_id",
                                             "due_on", "status")}
        if row["countermeasure_id"] in stored:
            countermeasure_id = row["countermeasure_id"]
            db["countermeasures"].update(countermeasure_id, {**columns, "updated_at": now})
            # Its text and status may have changed: an older progress form must not win.
            db.execute("UPDATE countermeasures SET version = version + 1"
                       " WHERE countermeasure_id = ?", [countermeasure_id])
        else:
            countermeasure_id = db["countermeasures"].insert(
                {**columns, "case_id": case_id, "created_at": now, "updated_at": now}).last_pk
        kept.add(countermeasure_id)
        db.execute("DELETE FROM countermeasure_checklist_items WHERE countermeasure_id = ?",
                   [countermeasure_id])
        db["countermeasure_checklist_items"].insert_all(
            {"countermeasure_id": countermeasure_id, "item_code": code, "created_at": now}
            for code in row["item_codes"])
    for gone in stored - kept:
        db.execute("DELETE FROM countermeasures WHERE countermeasure_id = ?", [gone])
    db.execute("DELETE FROM case_checklist_items WHERE case_id = ?", [case_id])
    db["case_checklist_items"].insert_all(
        {"case_id": case_id, "item_code": code, "created_at": now} for code in codes)
