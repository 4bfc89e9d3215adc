"""Sharing the office's published cases with other municipalities (issue #15).

What is shared: the office's own (internal) incidents that are published here and whose
公表 decision is 個別公表 or 一括公表 — never a near-miss, a draft, a report still in
review, a withdrawn case, a 非公表 case or an external one. Each becomes one record in
exactly the shape ``kb.imports`` reads (JSON Lines, or CSV with Japanese headers in UTF-8
with BOM or CP932), so another office running this app imports the file as it is, and a
later export updates its cases in place: the record id is made from the 全国地方公共団体
コード (5 digits) and the case id, ``13101-000123``.

A record holds the office's name and prefecture (settings), the 課, the dates (発生日; 公表日
= the day recorded on the 公表 record), type, task, channel, what happened, the causes
(the なぜ steps and the root cause), the countermeasures' texts, the lesson and the 公表's
public address as 出典. Never the reporter, comments, the personal-data review, the
statutory flags, internal-only fields (how it was found, the immediate action, 4M, rule
status, countermeasure owners and dates) or anything else.

Before anything is written, every free-text field is scanned with ``kb.pii`` as reports
are (a finding a reviewer confirmed as not personal data stays confirmed): any finding
stops the export with the list (case, field, excerpt) and no file is written at all.
"""

import csv
import io
import json
import os
import re
import tempfile
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from kb import audit, dates, imports, pii, workflow
from kb.cases import INCIDENT_TYPE_LABELS, TASK_LABELS
from kb.db import transaction
from kb.exceptions import Invalid, PersonalDataInExport
from kb.rendering import _looks_like_formula, spreadsheet_text
from kb.roles import require_role
from kb.statutory import DISCLOSURE_LABELS

FORMATS = ("jsonl", "csv")
ENCODINGS = ("utf-8", "cp932")
SHARED_DISCLOSURES = ("individual", "batch")
JST = timezone(timedelta(hours=9))
# The record keys in the order of the CSV columns; every one is a key kb.imports reads.
COLUMNS = ("id", "title", "municipality", "prefecture", "occurred_on", "published_on",
           "incident_type", "task", "channel", "department", "summary", "affected_count",
           "data_items", "causes", "countermeasures", "lesson", "source_url", "source_title")
LIST_COLUMNS = ("data_items", "causes", "countermeasures")
# Fields scanned for personal data: the free text. Not the id, dates, codes and settings,
# nor the 公表's URL — the address of a page the office has already published, whose page
# numbers (/0000123456.html) read as phone numbers.
SCANNED = ("title", "channel", "department", "summary", "data_items", "causes",
           "countermeasures", "lesson", "source_title")
EXCERPT = 15  # characters shown either side of a finding
ROOT_CAUSE_PREFIX = "根本原因："
# Characters Windows writes differently in CP932: a Mac's or the web's 〜 is Excel's ～.
CP932_EQUIVALENTS = str.maketrans({"\u301c": "\uff5e", "\u2212": "\uff0d", "\u2016": "\u2225",
                                   "\u00a2": "\uffe0", "\u00a3": "\uffe1", "\u00ac": "\uffe2",
                                   "\u2014": "\u2015"})


@dataclass(frozen=True)
class Office:
    """Who the exported cases come from: the settings MUNICIPALITY_CODE (5 digits here),
    MUNICIPALITY_NAME and PREFECTURE."""
    code: str
    name: str
    prefecture: str


@dataclass
class Export:
    """A finished export: the file's bytes, its suggested name and what it holds."""
    data: bytes
    filename: str
    format: str
    encoding: str
    case_ids: list[int] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.case_ids)


# --- settings -----------------------------------------------------------------------------

def check_digit(code5: str) -> int:
    """The 検査数字 of a 5-digit 全国地方公共団体コード (総務省: weights 6 to 2, modulus 11)."""
    remainder = sum(int(d) * w for d, w in zip(code5, (6, 5, 4, 3, 2))) % 11
    return (11 - remainder) % 10


def office_from_settings(settings) -> Office:
    """The ``Office`` of the app's settings (a mapping such as ``app.config``).

    Invalid, keyed by the setting's name, when the code is missing or not a 全国地方公共
    団体コード (5 digits, or 6 with a matching check digit, of prefecture 01–47), or the
    name is missing: an export cannot say whose cases these are without them.
    """
    errors: dict[str, list[str]] = {}
    code = unicodedata.normalize("NFKC", str(settings.get("MUNICIPALITY_CODE") or "")).strip()
    name = unicodedata.normalize("NFKC", str(settings.get("MUNICIPALITY_NAME") or "")).strip()
    prefecture = unicodedata.normalize("NFKC", str(settings.get("PREFECTURE") or "")).strip()
    example = "例：千代田区は 131016（検査数字を除いた 13101 でも可）"
    if not code:
        errors["KB_MUNICIPALITY_CODE"] = [
            f"自治体コード（設定 KB_MUNICIPALITY_CODE）が設定されていないため、書き出せません。"
            f"全国地方公共団体コード（6桁）を設定してください（{example}）。"]
    elif not re.fullmatch(r"[0-9]{5,6}", code):
        errors["KB_MUNICIPALITY_CODE"] = [
            f"自治体コード（KB_MUNICIPALITY_CODE）「{code[:20]}」は全国地方公共団体コードではありません。"
            f"数字6桁か、検査数字を除いた5桁で設定してください（{example}）。"]
    elif not 1 <= int(code[:2]) <= 47:
        errors["KB_MUNICIPALITY_CODE"] = [
            f"自治体コード（KB_MUNICIPALITY_CODE）「{code}」の最初の2桁は都道府県の番号"
            f"（01〜47）のはずです。設定を確かめてください。"]
    elif len(code) == 6 and int(code[5]) != check_digit(code[:5]):
        errors["KB_MUNICIPALITY_CODE"] = [
            f"自治体コード（KB_MUNICIPALITY_CODE）「{code}」の検査数字（6桁目）が合いません"
            f"（{code[:5]} なら {code[:5]}{check_digit(code[:5])}）。打ち間違いがないか確かめてください。"]
    if not name:
        errors["KB_MUNICIPALITY_NAME"] = [
            "自治体名（設定 KB_MUNICIPALITY_NAME）が設定されていないため、書き出せません。"
            "取り込む側で事例の自治体名になります（例：千代田区）。"]
    elif len(name) > imports.TEXT_LIMITS["municipality"]:
        errors["KB_MUNICIPALITY_NAME"] = [
            f"自治体名（KB_MUNICIPALITY_NAME）は{imports.TEXT_LIMITS['municipality']}文字以内にしてください。"]
    if len(prefecture) > imports.TEXT_LIMITS["prefecture"]:
        errors["KB_PREFECTURE"] = [
            f"都道府県（KB_PREFECTURE）は{imports.TEXT_LIMITS['prefecture']}文字以内にしてください。"]
    if errors:
        raise Invalid(errors)
    return Office(code[:5], name, prefecture)


def shared_id(office: Office, case_id: int) -> str:
    """The id a case keeps in every export: ``13101-000123``."""
    return f"{office.code}-{case_id:06d}"


# --- reading ------------------------------------------------------------------------------

def _since(value) -> date | None:
    if value in (None, ""):
        return None
    if isinstance(value, date):
        return value
    try:
        # 2026-04-01 as the command line writes it, or 2026/4/1, 令和8年4月1日 … (kb.dates)
        day = dates.parse_day(str(value))
        return date.fromisoformat(day) if day else None
    except ValueError:
        raise Invalid({"since": [f"日付「{str(value)[:20]}」は YYYY-MM-DD の形の、存在する日付で"
                                 "指定してください（例：2026-04-01）。"]}) from None


def publication_day(case: dict) -> date | None:
    """The day a shared case counts as published, which ``since`` compares: the 公表日 on
    its 公表 record, else the day (Japan time) it was published in this knowledge base."""
    if case.get("disclosed_on"):
        return date.fromisoformat(case["disclosed_on"])
    if case.get("published_at"):
        return datetime.fromisoformat(case["published_at"]).astimezone(JST).date()
    return None


def _shared_cases(db, since: date | None) -> list[dict]:
    placeholders = ", ".join("?" for _ in SHARED_DISCLOSURES)
    rows = db.execute_returning_dicts(
        "SELECT c.*, d.name AS department_label FROM cases c"
        " LEFT JOIN departments d ON d.department_id = c.department_id"
        " WHERE c.origin = 'internal' AND c.status = 'published' AND c.kind = 'incident'"
        f" AND c.disclosure IN ({placeholders}) ORDER BY c.case_id", list(SHARED_DISCLOSURES))
    if since is not None:
        rows = [row for row in rows if (publication_day(row) or date.min) >= since]
    return rows


def _countermeasure_texts(db, case_id: int) -> list[str]:
    return [row[0] for row in db.execute(
        "SELECT text FROM countermeasures WHERE case_id = ? ORDER BY position, countermeasure_id",
        [case_id])]


def _record(db, office: Office, case: dict) -> tuple[dict, list[tuple[str, str, str]]]:
    """The import record of a shared case, and (record field, report field, text) for
    each piece of free text it holds — the report field names a reviewer's confirmation
    is kept under (``pii_confirmations``)."""
    pieces: list[tuple[str, str, str]] = []

    def text(key: str, report_field: str, value) -> str:
        value = (value or "").strip()
        if value:
            pieces.append((key, report_field, value))
        return value

    causes = [text("causes", f"causes-{i}", cause)
              for i, cause in enumerate(json.loads(case["causes"] or "[]"))]
    causes += [text("causes", f"whys-{i}", why)
               for i, why in enumerate(json.loads(case["whys"] or "[]"))]
    if (case["root_cause"] or "").strip():
        text("causes", "root_cause", case["root_cause"])
        causes.append(ROOT_CAUSE_PREFIX + case["root_cause"].strip())
    label = DISCLOSURE_LABELS[case["disclosure"]]
    record = {
        "id": shared_id(office, case["case_id"]),
        "title": text("title", "title", case["title"]),
        "municipality": office.name,
        "prefecture": office.prefecture,
        "occurred_on": case["occurred_on"] or "",
        "published_on": case["disclosed_on"] or "",
        "incident_type": case["incident_type"],
        "task": case["task"] or "",
        "channel": text("channel", "channel", case["channel"]),
        "department": text("department", "department", case["department_label"]),
        "summary": text("summary", "summary", case["summary"]),
        "affected_count": case["affected_count"],
        "data_items": [text("data_items", f"data_items-{i}", item)
                       for i, item in enumerate(json.loads(case["data_items"] or "[]"))],
        "causes": [cause for cause in causes if cause],
        "countermeasures": [text("countermeasures", f"countermeasures-{i}-text", measure)
                            for i, measure in enumerate(_countermeasure_texts(db, case["case_id"]))],
        "lesson": text("lesson", "lesson", case["lesson"]),
        "source_url": case["disclosure_url"] or "",
        "source_title": (f"{office.name}の{label}" if case["disclosure_url"]
                         else f"{office.name}から共有された事例（{label}）"),
    }
    for key in LIST_COLUMNS:
        record[key] = [item for item in record[key] if item]
    pieces.append(("source_title", "source_title", record["source_title"]))
    return record, pieces


def _findings(case: dict, record: dict, pieces, confirmed: set) -> list[dict]:
    found = []
    for key, report_field, value in pieces:
        if key not in SCANNED:
            continue
        for finding in pii.scan(value):
            if (report_field, finding.text) in confirmed:
                continue  # a reviewer said it is not personal data, as for publishing
            start, end = max(finding.start - EXCERPT, 0), finding.end + EXCERPT
            excerpt = (("…" if start else "") + value[start:end].replace("\n", " ")
                       + ("…" if end < len(value) else ""))
            found.append({"case_id": case["case_id"], "id": record["id"], "title": record["title"],
                          "field": key, "field_label": imports.FIELD_NAMES[key],
                          "kind": finding.kind, "kind_label": finding.label,
                          "text": finding.text, "excerpt": excerpt})
    return found


def shared_records(db, actor, office: Office, *, since=None) -> tuple[list[dict], list[dict]]:
    """The records of the shared cases (oldest case first), and every personal-data
    finding in them ({case_id, id, title, field, field_label, kind, kind_label, text,
    excerpt}). ``since`` (a date or 'YYYY-MM-DD') keeps the cases whose
    ``publication_day`` is that day or later. Reviewers, or the command line (None)."""
    if actor is not None:
        require_role(actor, "reviewer")
    since = _since(since)
    records, findings = [], []
    with imports._read_snapshot(db):  # one state of the office's cases, no write lock
        for case in _shared_cases(db, since):
            record, pieces = _record(db, office, case)
            findings += _findings(case, record, pieces,
                                  workflow.confirmed_findings(db, case["case_id"]))
            records.append(record)
    return records, findings


def page_state(db, actor, settings) -> dict:
    """What the reviewers' export page shows before anything is chosen: the office as the
    settings give it (or the settings' messages) and how many cases are shared now."""
    require_role(actor, "reviewer")
    try:
        office, settings_errors = office_from_settings(settings), {}
    except Invalid as error:
        office, settings_errors = None, error.errors
    with imports._read_snapshot(db):
        count = len(_shared_cases(db, None))
    return {"office": office, "settings_errors": settings_errors, "count": count}


# --- writing --------------------------------------------------------------------------------

def render(records: list[dict], fmt: str, encoding: str = "utf-8") -> bytes:
    """The bytes of the file: JSON Lines (UTF-8, one record a line, as the seed file), or
    CSV with the Japanese headers ``kb.imports`` reads — lists one item a line in a cell,
    type and task by their Japanese names, formula-like cells quoted (``spreadsheet_text``,
    which the importer takes off again) — in UTF-8 with BOM or CP932.

    Invalid for an unknown format or encoding, JSON Lines in CP932, or text CP932 cannot
    hold (listed by case and field; 〜 and the like become their Windows forms first).
    """
    if fmt not in FORMATS:
        raise Invalid({"format": ["形式は JSON Lines か CSV を選んでください。"]})
    if encoding not in ENCODINGS:
        raise Invalid({"encoding": ["文字コードは UTF-8 か CP932（Shift_JIS）を選んでください。"]})
    if fmt == "jsonl":
        if encoding != "utf-8":
            raise Invalid({"encoding": ["JSON Lines は UTF-8 で書き出します。CP932（Shift_JIS）を選べるのは CSV だけです。"]})
        return "".join(json.dumps(record, ensure_ascii=False) + "\n"
                       for record in records).encode("utf-8")
    rows = [[_csv_cell(key, record[key]) for key in COLUMNS] for record in records]
    header = [imports.FIELD_NAMES[key] for key in COLUMNS]
    if encoding == "cp932":
        rows = [[cell.translate(CP932_EQUIVALENTS) if isinstance(cell, str) else cell
                 for cell in row] for row in rows]
        _check_cp932(records, rows)
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows([_guarded(cell) for cell in row] for row in rows)
    return buffer.getvalue().encode("utf-8-sig" if encoding == "utf-8" else "cp932")


def _guarded(cell):
    # The importer takes one ' off a cell that reads as a formula behind its quotes, so
    # text that itself starts so (「'=SUM( …」) gets a guard quote too and arrives as typed.
    if isinstance(cell, str) and cell.startswith("'") and _looks_like_formula(cell.lstrip("'")):
        return "'" + cell
    return spreadsheet_text(cell)


def _csv_cell(key: str, value):
    if key in LIST_COLUMNS:
        # The importer splits these cells at new lines: an item keeps to one line.
        return "\n".join(" ".join(item.split("\n")) for item in value)
    if key == "incident_type":
        return INCIDENT_TYPE_LABELS.get(value, value)
    if key == "task":
        return TASK_LABELS.get(value, value) if value else ""
    return "" if value is None else value


def _check_cp932(records: list[dict], rows: list[list]) -> None:
    errors: dict[str, list[str]] = {}
    for record, row in zip(records, rows):
        for key, cell in zip(COLUMNS, row):
            if not isinstance(cell, str):
                continue
            bad = sorted({ch for ch in cell if not _in_cp932(ch)})
            if bad:
                errors[f"{record['id']} {imports.FIELD_NAMES[key]}"] = [
                    f"「{'」「'.join(bad[:5])}」は CP932（Shift_JIS）で表せない文字です。"
                    "UTF-8 で書き出してください。"]
    if errors:
        raise Invalid(errors)


def _in_cp932(ch: str) -> bool:
    try:
        ch.encode("cp932")
    except UnicodeEncodeError:
        return False
    return True


def export_cases(db, actor, settings, *, fmt: str = "jsonl", encoding: str = "utf-8",
                 since=None) -> Export:
    """Build the export for ``actor`` (reviewers; None: the command line) and record it in
    the audit log as ``cases_export`` (who, format, which cases, how many).

    Raises Forbidden for anyone else, Invalid (messages keyed by setting or option) for a
    missing or malformed setting or option, and PersonalDataInExport — its ``findings`` a
    list of findings as ``shared_records`` gives them — when any exported text looks like
    personal data; nothing is exported then (the refusal is audited as
    ``cases_export_refused``).
    """
    export = _build(db, actor, settings, fmt, encoding, since)
    _audit_export(db, actor, export, since)
    return export


def _build(db, actor, settings, fmt, encoding, since) -> Export:
    if actor is not None:
        require_role(actor, "reviewer")
    office = office_from_settings(settings)
    if fmt not in FORMATS or encoding not in ENCODINGS or (fmt, encoding) == ("jsonl", "cp932"):
        render([], fmt, encoding)  # raises the option's message before anything is read
    records, findings = shared_records(db, actor, office, since=since)
    if findings:
        with transaction(db):
            audit.record(db, actor, "cases_export_refused", detail={
                "format": fmt, "since": str(_since(since) or ""), "findings": len(findings),
                "case_ids": sorted({f["case_id"] for f in findings})})
        raise PersonalDataInExport(findings)
    data = render(records, fmt, encoding)
    case_ids = [int(record["id"].rsplit("-", 1)[1]) for record in records]
    stamp = datetime.now(JST).strftime("%Y%m%d")
    return Export(data, f"cases-{office.code}-{stamp}.{fmt}", fmt, encoding, case_ids)


def _audit_export(db, actor, export: Export, since, target: str | None = None) -> None:
    with transaction(db):
        audit.record(db, actor, "cases_export", target=target or export.filename, detail={
            "format": export.format, "encoding": export.encoding,
            "since": str(_since(since) or ""), "count": export.count,
            "case_ids": export.case_ids})


def write_export(db, actor, settings, path, *, fmt: str = "jsonl", encoding: str = "utf-8",
                 since=None, protected=()) -> Export:
    """``export_cases`` into the file at ``path``, all or nothing, audited once written.

    The bytes go to a temporary file in the same folder, which replaces ``path`` only once
    complete (an existing export is overwritten then, never left half-written); on any
    refusal no file is created or touched. Invalid, writing nothing, when ``path`` is a
    folder, its folder does not exist, or it is one of ``protected`` (the database and
    its companion files: an export must not overwrite what it reads), or when the system
    refuses the file (a name too long, no permission, a full disk: the OS's reason quoted).
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    try:  # the checks themselves meet the system's refusals (a name too long …)
        if target.is_dir():
            raise Invalid({"FILE": [f"{target} はフォルダです。書き出すファイルの名前を指定してください。"]})
        if not folder.is_dir():
            raise Invalid({"FILE": [f"フォルダ {folder} がありません。"]})
        resolved = target.resolve()
        for other in protected:
            other = Path(other).resolve()
            if resolved == other or (resolved.parent == other.parent
                                     and resolved.name.startswith(other.name + "-")):
                raise Invalid({"FILE": [f"{target} はこのナレッジベースのデータベースのファイルです。"
                                        "別のファイル名を指定してください。"]})
    except OSError as error:
        raise _unwritable(target, error) from None
    export = _build(db, actor, settings, fmt, encoding, since)
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name[:100]}.", suffix=".part",
                                             dir=folder)
    except OSError as error:
        raise _unwritable(target, error) from None
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(export.data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError):  # a name too long, no permission, a full disk …
            raise _unwritable(target, error) from None
        raise
    _audit_export(db, actor, export, since, target=str(target))
    return export


def _unwritable(target: Path, error: OSError) -> Invalid:
    return Invalid({"FILE": [f"{target} に書き出せません（{error.strerror or error}）。ファイル名の長さ、"
                             "フォルダの書き込み権限、ディスクの空きを確かめてください。"]})
