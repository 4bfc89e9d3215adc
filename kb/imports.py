"""Loading cases published by other municipalities.

Reads JSON Lines in the shape of ``data/seed/external_cases.jsonl``. Every record is
validated before anything is written; one bad record means nothing is written. A
record is matched to a stored case by its ``id`` and updated in place, so loading the
same file twice changes nothing.
"""

import json
import re
from pathlib import Path

from kb import audit
from kb.cases import INCIDENT_TYPES, infer_task
from kb.db import mark_changed, transaction, utcnow
from kb.exceptions import Invalid

DATE_PATTERN = re.compile(r"^\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?)?$")
TEXT_FIELDS = ("municipality", "prefecture", "title", "channel", "department", "summary",
               "source_url", "source_title")
LIST_FIELDS = ("data_items", "causes", "countermeasures")
# Stored columns compared to tell an updated record from an unchanged one.
COMPARED_COLUMNS = ("title", "occurred_on", "published_on", "municipality", "prefecture",
                    "department_name", "task", "incident_type", "channel", "summary",
                    "affected_count", "data_items", "causes", "source_url", "source_title")


def read_jsonl(path) -> list[tuple[int, dict]]:
    """(line number, record) for each non-blank line; Invalid if a line is not a JSON object."""
    records, errors = [], {}
    text = Path(path).read_text(encoding="utf-8-sig")
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            errors[f"{line_no}行目"] = [f"JSONとして読めません（{exc.msg}、{exc.colno}文字目）。"]
            continue
        if not isinstance(record, dict):
            errors[f"{line_no}行目"] = ["1行に1件のオブジェクト（{…}）を書いてください。"]
            continue
        records.append((line_no, record))
    if errors:
        raise Invalid(errors)
    return records


def validate_external(record: dict) -> dict[str, list[str]]:
    """Japanese messages by field for one external record (empty when valid)."""
    errors: dict[str, list[str]] = {}

    def fail(field, message):
        errors.setdefault(field, []).append(message)

    if not isinstance(record.get("id"), str) or not record["id"].strip():
        fail("id", "id（事例ID）は必須です。")
    if not isinstance(record.get("title"), str) or not record["title"].strip():
        fail("title", "title（件名）は必須です。")
    if not isinstance(record.get("municipality"), str) or not record["municipality"].strip():
        fail("municipality", "municipality（自治体名）は必須です。")
    if record.get("incident_type") not in INCIDENT_TYPES:
        fail("incident_type", f"incident_type（種別）「{record.get('incident_type')}」は"
                              "決められた種別のどれでもありません。")
    for field in TEXT_FIELDS:
        if record.get(field) is not None and not isinstance(record[field], str):
            fail(field, f"{field} は文字列で書いてください。")
    for field in ("occurred_on", "published_on"):
        value = record.get(field)
        if value is not None and not (isinstance(value, str) and DATE_PATTERN.match(value)):
            fail(field, f"{field}（日付）「{value}」は YYYY-MM-DD か YYYY-MM で書いてください。")
    count = record.get("affected_count")
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 0):
        fail("affected_count", "affected_count（人数）は0以上の整数で書いてください。")
    for field in LIST_FIELDS:
        value = record.get(field)
        if value is not None and not (isinstance(value, list)
                                      and all(isinstance(v, str) for v in value)):
            fail(field, f"{field} は文字列のリストで書いてください。")
    url = record.get("source_url")
    if isinstance(url, str) and url and not url.startswith(("http://", "https://")):
        fail("source_url", "source_url（出典）は http:// か https:// で始まるURLにしてください。")
    return errors


def external_case_row(record: dict) -> dict:
    """The ``cases`` columns of an external record."""
    return {
        "external_id": record["id"].strip(),
        "kind": "incident",
        "origin": "external",
        "status": "published",
        "title": record["title"].strip(),
        "occurred_on": record.get("occurred_on"),
        "published_on": record.get("published_on"),
        "municipality": record["municipality"].strip(),
        "prefecture": record.get("prefecture"),
        "department_name": record.get("department"),
        "task": infer_task(record["incident_type"], record.get("channel")),
        "incident_type": record["incident_type"],
        "channel": record.get("channel"),
        "summary": record.get("summary") or "",
        "affected_count": record.get("affected_count"),
        "data_items": json.dumps(record.get("data_items") or [], ensure_ascii=False),
        "causes": json.dumps(record.get("causes") or [], ensure_ascii=False),
        "source_url": record.get("source_url"),
        "source_title": record.get("source_title"),
    }


def import_external_cases(db, path, actor=None, *, only_new=False) -> dict:
    """Validate every record of a JSON Lines file, then insert or update them all at once.

    Raises Invalid (keys like ``12行目 title``) and writes nothing if any record is bad.
    With ``only_new``, records whose id is already stored are left as they are (counted
    as "existing"): seeding never overwrites what a reviewer has edited.
    Returns counts {"new", "updated", "unchanged", "existing"} and the changed case ids.
    """
    records = read_jsonl(path)
    errors, seen = {}, {}
    for line_no, record in records:
        for field, messages in validate_external(record).items():
            errors[f"{line_no}行目 {field}"] = messages
        external_id = record.get("id")
        if isinstance(external_id, str) and external_id in seen:
            errors[f"{line_no}行目 id"] = [
                f"id「{external_id}」は{seen[external_id]}行目と重複しています。"]
        seen.setdefault(external_id, line_no)
    if errors:
        raise Invalid(errors)

    summary = {"new": 0, "updated": 0, "unchanged": 0, "existing": 0, "changed_case_ids": []}
    with transaction(db):
        for _, record in records:
            if only_new and db.execute("SELECT 1 FROM cases WHERE external_id = ?",
                                       [record["id"].strip()]).fetchone():
                summary["existing"] += 1
                continue
            outcome, case_id = _upsert_external(db, external_case_row(record),
                                                record.get("countermeasures") or [])
            summary[outcome] += 1
            if outcome != "unchanged":
                summary["changed_case_ids"].append(case_id)
        if summary["new"] or summary["updated"]:
            audit.record(db, actor, "cases_import", target=Path(path).name,
                         detail={key: summary[key] for key in ("new", "updated", "unchanged")})
    return summary


def _upsert_external(db, row: dict, countermeasures: list[str]) -> tuple[str, int]:
    now = utcnow()
    existing = db.execute_returning_dicts(
        "SELECT * FROM cases WHERE external_id = ?", [row["external_id"]])
    if not existing:
        case_id = db["cases"].insert(dict(row, created_at=now, updated_at=now,
                                          published_at=now)).last_pk
        _sync_countermeasures(db, case_id, countermeasures, now)
        mark_changed(db, case_id)
        return "new", case_id
    case = existing[0]
    case_id = case["case_id"]
    stored_texts = [r["text"] for r in db.query(
        "SELECT text FROM countermeasures WHERE case_id = ? ORDER BY position", [case_id])]
    if all(case[column] == row[column] for column in COMPARED_COLUMNS) \
            and stored_texts == countermeasures:
        return "unchanged", case_id
    db["cases"].update(case_id, dict(row, updated_at=now, version=case["version"] + 1))
    _sync_countermeasures(db, case_id, countermeasures, now)
    mark_changed(db, case_id)
    return "updated", case_id


def _sync_countermeasures(db, case_id: int, texts: list[str], now: str) -> None:
    """Make the case's countermeasures read ``texts``, in place by position.

    Rows keep their ids where a position stays, so checklist links on them survive.
    """
    stored = db.execute_returning_dicts(
        "SELECT countermeasure_id, position, text FROM countermeasures"
        " WHERE case_id = ? ORDER BY position", [case_id])
    for position, text in enumerate(texts):
        if position < len(stored):
            if stored[position]["text"] != text:
                db["countermeasures"].update(stored[position]["countermeasure_id"],
                                             {"text": text, "updated_at": now})
        else:
            db["countermeasures"].insert({
                "case_id": case_id, "position": position, "text": text,
                "created_at": now, "updated_at": now,
            })
    for extra in stored[len(texts):]:
        db.execute("DELETE FROM countermeasures WHERE countermeasure_id = ?",
                   [extra["countermeasure_id"]])
