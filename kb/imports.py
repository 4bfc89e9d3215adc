"""Cases published by other municipalities: import, validation, editing, withdrawal.

A file is JSON Lines in the shape of ``data/seed/external_cases.jsonl``, or CSV as
municipal staff save it from Excel: UTF-8 with or without BOM, or Shift_JIS/CP932, with a
header row in Japanese or English (``CSV_HEADERS``). Every record is checked before
anything is written; one bad record means nothing is written, and every problem is
reported with its line and field. Records are matched to stored cases by ``id``, else by
``source_url``, and updated in place, so importing the same file twice changes nothing.
"""

import contextlib
import csv
import functools
import hashlib
import io
import json
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from kb import analysis, audit
from kb.cases import INCIDENT_TYPE_LABELS, INCIDENT_TYPES, TASK_LABELS, TASKS, infer_task
from kb.db import mark_changed, transaction, utcnow
from kb.exceptions import Conflict, Invalid, NotFound
from kb.rendering import _looks_like_formula
from kb.reports import clean_text
from kb.roles import require_role

MAX_BYTES = 20 * 2**20  # larger files are refused before they are read

# CSV header (Japanese or English, case and width folded) → record key.
CSV_HEADERS = {
    "id": "id", "事例id": "id", "番号": "id",
    "件名": "title", "title": "title", "タイトル": "title",
    "自治体名": "municipality", "自治体": "municipality", "municipality": "municipality",
    "都道府県": "prefecture", "prefecture": "prefecture",
    "発生日": "occurred_on", "occurred_on": "occurred_on",
    "公表日": "published_on", "published_on": "published_on",
    "種別": "incident_type", "incident_type": "incident_type",
    "作業": "task", "task": "task",
    "経路": "channel", "channel": "channel",
    "担当課": "department", "department": "department",
    "概要": "summary", "summary": "summary",
    "人数": "affected_count", "affected_count": "affected_count", "影響人数": "affected_count",
    "漏えい項目": "data_items", "data_items": "data_items", "漏えいした項目": "data_items",
    "原因": "causes", "causes": "causes",
    "再発防止策": "countermeasures", "countermeasures": "countermeasures",
    "出典": "source_url", "source_url": "source_url", "出典url": "source_url",
    "出典名": "source_title", "source_title": "source_title",
    "教訓": "lesson", "lesson": "lesson",
}
FIELD_NAMES = {
    "id": "ID", "title": "件名", "municipality": "自治体名", "prefecture": "都道府県",
    "occurred_on": "発生日", "published_on": "公表日", "incident_type": "種別", "task": "作業",
    "channel": "経路", "department": "担当課", "summary": "概要", "affected_count": "人数",
    "data_items": "漏えい項目", "causes": "原因", "countermeasures": "再発防止策",
    "source_url": "出典", "source_title": "出典名", "lesson": "教訓",
}
# Japanese names of the incident types accepted in 種別, besides the codes and the labels.
INCIDENT_TYPE_NAMES = {
    "誤送付": "postal_misdelivery", "誤配送": "postal_misdelivery", "誤封入": "postal_misdelivery",
    "郵送誤り": "postal_misdelivery", "メール誤送信": "email_missend", "誤送信": "email_missend",
    "fax誤送信": "fax_missend", "ファクス誤送信": "fax_missend", "ファックス誤送信": "fax_missend",
    "紛失": "document_loss", "書類紛失": "document_loss", "書類の紛失": "document_loss",
    "媒体紛失": "media_loss", "記録媒体の紛失": "media_loss", "usb紛失": "media_loss",
    "誤交付": "counter_misissue", "誤掲載": "web_mispublish", "ウェブ誤掲載": "web_mispublish",
    "委託先": "contractor", "委託先事故": "contractor", "設定誤り": "system_misconfig",
    "設定ミス": "system_misconfig", "不正アクセス": "cyber_attack", "サイバー攻撃": "cyber_attack",
    "誤廃棄": "improper_disposal", "不適切な廃棄": "improper_disposal",
    "目的外利用": "staff_misconduct", "不正": "staff_misconduct", "職員の不正": "staff_misconduct",
    "口頭": "oral_disclosure", "その他": "other",
}
TEXT_LIMITS = {"id": 40, "title": 200, "municipality": 40, "prefecture": 10, "channel": 60,
               "department": 100, "summary": 4000, "source_url": 1000, "source_title": 300,
               "lesson": 500}
LIST_LIMIT = 50
MAX_AFFECTED = 10**9
# Stored columns compared to tell an updated record from an unchanged one.
COMPARED_COLUMNS = ("title", "occurred_on", "published_on", "municipality", "prefecture",
                    "department_name", "task", "incident_type", "channel", "summary",
                    "affected_count", "data_items", "causes", "source_url", "source_title",
                    "lesson")
DUPLICATE_DAYS = 30
DUPLICATE_SIMILARITY = 0.4


@dataclass
class ImportResult:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    existing: int = 0
    changes: list[dict] = field(default_factory=list)
    duplicates: list[dict] = field(default_factory=list)
    changed_case_ids: list[int] = field(default_factory=list)
    lost_links: list[dict] = field(default_factory=list)
    dry_run: bool = False
    # The state of the external cases the changes were worked out from: the preview page
    # carries it, and 「取り込む」 is refused once it no longer holds (``import_cases``).
    fingerprint: str = ""

    def __getitem__(self, key):  # result["new"] reads like the summary it is
        return getattr(self, key)

    @property
    def changed(self) -> bool:
        return bool(self.new or self.updated)


# --- reading -------------------------------------------------------------------------

def decode(data: bytes) -> str:
    """UTF-8 (with or without BOM), else Shift_JIS/CP932 as Excel saves it."""
    for encoding in ("utf-8-sig", "cp932"):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if "\x00" not in text:  # NUL bytes mean UTF-16 or a binary file, whatever decoded
            return text
    raise Invalid({"ファイル": ["文字コードを読み取れません。UTF-8 か Shift_JIS（CP932）で保存してください。"]})


def detect_format(filename: str, text: str) -> str:
    suffix = Path(filename or "").suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if suffix in (".csv", ".txt", ".tsv"):
        return "csv"
    return "jsonl" if text.lstrip().startswith("{") else "csv"


def _uploaded_text(data: bytes) -> str:
    """An uploaded file's text (``decode``); Invalid when it is over MAX_BYTES or empty."""
    if len(data) > MAX_BYTES:
        raise Invalid({"ファイル": [f"ファイルが大きすぎます（{len(data) / 2**20:.0f} MB）。"
                                 f"{MAX_BYTES // 2**20} MB 以下に分けてください。"]})
    text = decode(data)
    if not text.strip():
        raise Invalid({"ファイル": ["ファイルが空です。"]})
    return text


def read_records(data: bytes, filename: str = "") -> list[tuple[int, dict]]:
    """(line number, raw record) for each record of a file; Invalid for an unreadable file."""
    text = _uploaded_text(data)
    return _read_jsonl(text) if detect_format(filename, text) == "jsonl" else _read_csv(text)


def _read_jsonl(text: str) -> list[tuple[int, dict]]:
    records, errors = [], {}
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            errors[f"{line_no}行目"] = [f"JSONとして読めません（{exc.msg}、{exc.colno}文字目）。"]
            continue
        except RecursionError:  # [[[[… deeper than the parser's stack
            errors[f"{line_no}行目"] = ["JSONの入れ子（[ や {）が深すぎて読めません。"
                                     "1件を1つのオブジェクトで、値は文字列・数・文字列のリストで書いてください。"]
            continue
        except ValueError:  # e.g. a number of thousands of digits
            errors[f"{line_no}行目"] = ["JSONとして読めません（桁数が多すぎる数があります）。"]
            continue
        if not isinstance(record, dict):
            errors[f"{line_no}行目"] = ["1行に1件のオブジェクト（{…}）を書いてください。"]
            continue
        records.append((line_no, record))
    if errors:
        raise Invalid(errors)
    return records


def fold_header(name: str) -> str:
    """A column name as looked up: NFKC, lower case, without spaces."""
    return unicodedata.normalize("NFKC", name or "").strip().lower().replace(" ", "")


def _header_key(name: str) -> str | None:
    return CSV_HEADERS.get(fold_header(name))


def _csv_rows(text: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the (line number, cells) of each non-blank row of a CSV text, in
    the dialect Excel saved it in (comma, tab or semicolon, as sniffed)."""
    sample = text[:4096]
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=",\t;").delimiter
    except csv.Error:
        delimiter = ","
    # Only the delimiter is taken from the sniffer: Excel quotes with " alone, and the
    # sniffer takes a ' at the start of cells (kb.rendering's guard on formula-looking
    # cells, in a file the app itself wrote) for the quote character and joins the cells.
    reader = csv.reader(io.StringIO(text, newline=""), csv.excel, delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise Invalid({"ファイル": ["ファイルが空です。"]}) from None
    except csv.Error as exc:
        raise Invalid({"1行目": [f"CSVとして読めません（{exc}）。"]}) from None
    rows = []
    line_no = reader.line_num + 1
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                rows.append((line_no, row))
            line_no = reader.line_num + 1
    except csv.Error as exc:
        raise Invalid({f"{line_no}行目": [f"CSVとして読めません（{exc}）。"]}) from None
    return header, rows


def read_csv_table(data: bytes) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """A CSV file as staff save it from Excel (UTF-8 with or without BOM, or CP932; the
    size limit; the sniffed dialect): its header and (line number, cells) of each row.
    Other modules' CSV uploads (kb/vocabulary.py) read through here."""
    return _csv_rows(_uploaded_text(data))


def _read_csv(text: str) -> list[tuple[int, dict]]:
    header, rows = _csv_rows(text)
    keys = [_header_key(name) for name in header]
    if "title" not in keys:
        raise Invalid({"1行目": ["見出し行に「件名」（title）の列がありません。1行目は列の名前にしてください。"]})
    return [(line_no, {key: _cell(cell) for key, cell in zip(keys, row) if key})
            for line_no, row in rows]


def _cell(value: str) -> str:
    # A CSV written by kb.rendering (export-cases, kb/sharing.py) put a ' before cells a
    # spreadsheet would run as a formula: take it off again, so that 「'- 封入前に…」 is
    # stored as the 「- 封入前に…」 that was exported. Stored text is never a formula here.
    # Text that itself began with 「'=」 was given one more quote: only one comes off.
    if value.startswith("'") and _looks_like_formula(value.lstrip("'")):
        return value[1:]
    return value


# --- checking ---------------------------------------------------------------------------

def _text(value) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError
    return clean_text(value)


def _list(value, name: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        if not all(isinstance(v, str) for v in value):
            raise TypeError
        return [v.strip() for v in value if v.strip()]
    if not isinstance(value, str):
        raise TypeError
    # Sentences (causes, countermeasures) hold 、 themselves: only a new line separates them.
    separators = r"[\r\n]+" if name in ("causes", "countermeasures") else r"[\r\n・、,，]+"
    return [item.strip() for item in re.split(separators, value) if item.strip()]


def parse_date(value) -> str | None:
    """'2024-12-05', '2024/12/5', '2024年12月5日', '2024-12' → ISO (as far as known)."""
    text = unicodedata.normalize("NFKC", _text(value))
    if not text:
        return None
    match = re.fullmatch(r"(\d{4})[-/年.](\d{1,2})(?:[-/月.](\d{1,2})日?|月)?", text) \
        or re.fullmatch(r"(\d{4})(\d{2})(\d{2})", text)
    if not match:
        raise ValueError
    year, month, day = int(match.group(1)), int(match.group(2)), match.group(3)
    if day is None:
        date(year, month, 1)
        return f"{year:04d}-{month:02d}"
    return date(year, month, int(day)).isoformat()


def incident_type_code(value) -> str | None:
    text = unicodedata.normalize("NFKC", _text(value)).lower().replace(" ", "")
    if text in INCIDENT_TYPES:
        return text
    for code, label in INCIDENT_TYPE_LABELS.items():
        if text == unicodedata.normalize("NFKC", label).lower():
            return code
    return INCIDENT_TYPE_NAMES.get(text)


def task_code(value) -> str | None:
    text = unicodedata.normalize("NFKC", _text(value)).lower()
    if text in TASKS:
        return text
    return next((code for code, label in TASK_LABELS.items()
                 if text == unicodedata.normalize("NFKC", label).lower()), None)


def _shown(value) -> str:
    """A rejected value as quoted in a message: short text only, never a whole structure."""
    if value is None:
        return ""
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        return "文字列でない値"
    text = str(value) if not isinstance(value, int) or abs(value) < 10**30 else "桁数の多い数"
    return text if len(text) <= 40 else text[:40] + "…"


def check_record(raw: dict) -> tuple[dict, dict[str, list[str]]]:
    """A raw record (JSON or CSV) as clean values, and Japanese messages by field."""
    errors: dict[str, list[str]] = {}
    clean: dict = {}

    def fail(key, message):
        errors.setdefault(key, []).append(message)

    for key, limit in TEXT_LIMITS.items():
        try:
            clean[key] = _text(raw.get(key))
        except TypeError:
            fail(key, f"{FIELD_NAMES[key]}は文字列で書いてください。")
            clean[key] = ""
            continue
        if len(clean[key]) > limit:
            fail(key, f"{FIELD_NAMES[key]}は{limit:,}文字以内にしてください。")
    for key in ("title", "municipality"):
        if not clean[key] and key not in errors:
            fail(key, f"{FIELD_NAMES[key]}は必須です。")
    if not clean["id"] and not clean["source_url"]:
        fail("id", "ID か 出典（source_url）のどちらかが必要です（再取り込みで同じ事例と分かるように）。")
    raw_type = raw.get("incident_type")
    clean["incident_type"] = incident_type_code(raw_type) if isinstance(raw_type, str) else None
    if clean["incident_type"] is None:
        fail("incident_type", f"種別「{_shown(raw_type)}」は決められた種別のどれでもありません"
                              "（例：誤送付、メール誤送信、FAX誤送信、紛失）。")
    raw_task = raw.get("task")
    clean["task"] = None
    if raw_task not in (None, ""):
        clean["task"] = task_code(raw_task) if isinstance(raw_task, str) else None
        if clean["task"] is None:
            fail("task", f"作業「{_shown(raw_task)}」は決められた作業のどれでもありません。")
    for key in ("occurred_on", "published_on"):
        try:
            clean[key] = parse_date(raw.get(key))
        except (ValueError, TypeError):
            fail(key, f"{FIELD_NAMES[key]}「{_shown(raw.get(key))}」は存在する日付を YYYY-MM-DD"
                      "（または YYYY/MM/DD、YYYY年M月D日、YYYY-MM）で書いてください。")
            clean[key] = None
    count = raw.get("affected_count")
    clean["affected_count"] = None
    if isinstance(count, bool) or (count not in (None, "") and not isinstance(count, (int, str))):
        fail("affected_count", "人数は0以上の整数で書いてください。")
    elif isinstance(count, int):
        clean["affected_count"] = count
    elif isinstance(count, str) and count.strip():
        digits = unicodedata.normalize("NFKC", count).replace(",", "").strip().removesuffix("人")
        clean["affected_count"] = int(digits) if digits.isdigit() else None
        if clean["affected_count"] is None:
            fail("affected_count", f"人数「{_shown(count)}」は0以上の整数で書いてください。")
    if isinstance(clean["affected_count"], int) and clean["affected_count"] < 0:
        fail("affected_count", "人数は0以上の整数で書いてください。")
    elif isinstance(clean["affected_count"], int) and clean["affected_count"] > MAX_AFFECTED:
        # SQLite stores at most 2**63 - 1; no leak has touched more people than Japan has
        fail("affected_count", f"人数が大きすぎます（{MAX_AFFECTED:,}人まで）。")
        clean["affected_count"] = None
    for key in ("data_items", "causes", "countermeasures"):
        try:
            clean[key] = _list(raw.get(key), key)
        except TypeError:
            fail(key, f"{FIELD_NAMES[key]}は文字列のリストで書いてください。")
            clean[key] = []
        if len(clean[key]) > LIST_LIMIT:
            fail(key, f"{FIELD_NAMES[key]}は{LIST_LIMIT}件までにしてください。")
    url = clean["source_url"]
    if url and not re.fullmatch(r"https?://[^\s<>\"']+", url):
        fail("source_url", "出典（source_url）は http:// か https:// で始まるURLにしてください。")
    return clean, errors


def external_case_row(clean: dict) -> dict:
    """The ``cases`` columns of a checked external record."""
    return {
        "external_id": clean["id"],
        "kind": "incident",
        "origin": "external",
        "title": clean["title"],
        "occurred_on": clean["occurred_on"],
        "published_on": clean["published_on"],
        "municipality": clean["municipality"],
        "prefecture": clean["prefecture"] or None,
        "department_name": clean["department"] or None,
        "task": clean["task"] or infer_task(clean["incident_type"], clean["channel"]),
        "incident_type": clean["incident_type"],
        "channel": clean["channel"] or None,
        "summary": clean["summary"],
        "affected_count": clean["affected_count"],
        "data_items": json.dumps(clean["data_items"], ensure_ascii=False),
        "causes": json.dumps(clean["causes"], ensure_ascii=False),
        "source_url": clean["source_url"] or None,
        "source_title": clean["source_title"] or None,
        "lesson": clean["lesson"],
    }


# --- importing --------------------------------------------------------------------------

def import_external_cases(db, path, actor=None, *, only_new=False, dry_run=False,
                          progress=None) -> ImportResult:
    """Import the file at ``path`` (see ``import_cases``)."""
    path = Path(path)
    if path.stat().st_size > MAX_BYTES:
        raise Invalid({"ファイル": [f"ファイルが大きすぎます（{path.stat().st_size / 2**20:.0f} MB）。"
                                 f"{MAX_BYTES // 2**20} MB 以下に分けてください。"]})
    return import_cases(db, path.read_bytes(), path.name, actor, only_new=only_new,
                        dry_run=dry_run, progress=progress)


def import_cases(db, data: bytes, filename: str, actor=None, *, only_new=False,
                 dry_run=False, progress=None, preview: str | None = None) -> ImportResult:
    """Check every record of a file, work out what it changes, then write it all at once.

    Raises Invalid (keys like ``12行目 件名``) and writes nothing if any record is bad.
    The changes are worked out in a read snapshot, which takes no write lock: other
    users keep saving meanwhile. With ``dry_run`` that is all (the preview). Otherwise
    the writes follow in one short transaction; should another user have changed an
    external case in between, the changes are worked out again inside it. With
    ``only_new`` stored records are left as they are (seeding never overwrites a
    reviewer's edit). ``progress(n)`` is called as records are worked out. Checklist
    links whose countermeasure the file drops are listed in ``lost_links``.

    ``preview`` is the ``fingerprint`` of the preview the reviewer confirmed (None: no
    preview, as on the command line): Conflict, writing nothing, when any external case
    changed since — an edit saved after the preview would otherwise be undone unseen.
    """
    if actor is not None:
        require_role(actor, "reviewer")
    records = read_records(data, filename)
    errors, checked, seen = {}, [], {}
    for line_no, raw in records:
        clean, problems = check_record(raw)
        for key, messages in problems.items():
            errors[f"{line_no}行目 {FIELD_NAMES.get(key, key)}"] = messages
        identity = clean["id"] or clean["source_url"]
        if identity and identity in seen:
            errors[f"{line_no}行目 ID"] = [f"「{identity}」は{seen[identity]}行目と同じ事例です。"]
        seen.setdefault(identity, line_no)
        checked.append((line_no, clean))
    if errors:
        raise Invalid(errors)

    with _read_snapshot(db):
        result, plan = _plan(db, checked, only_new, dry_run, progress)
        fingerprint = _external_fingerprint(db)
    result.fingerprint = _fingerprint_text(fingerprint)
    if preview is not None and preview != result.fingerprint:
        raise Conflict("the external cases changed since the preview")
    if dry_run or not result.changed:
        return result
    with transaction(db):
        if _external_fingerprint(db) != fingerprint:
            if preview is not None:
                raise Conflict("the external cases changed since the preview")
            result, plan = _plan(db, checked, only_new, dry_run, None)
        _apply(db, plan, result)
        if result.changed:
            audit.record(db, actor, "cases_import", target=filename, detail={
                "new": result.new, "updated": result.updated, "unchanged": result.unchanged,
                "lost_links": len(result.lost_links), "dry_run": False})
    return result


@contextlib.contextmanager
def _read_snapshot(db):
    """Reads that see one state of the database and block no writer (WAL)."""
    if db.conn.in_transaction:  # the caller's transaction is the snapshot
        yield
        return
    db.conn.execute("BEGIN DEFERRED")  # a read transaction: SQLite takes no write lock
    try:
        yield
    finally:
        db.conn.execute("ROLLBACK")  # nothing was written; this only ends the snapshot


def _external_fingerprint(db) -> tuple:
    # Every write to an external case (import, edit, withdrawal, checklist links) raises
    # its version, so this changes whenever anything the plan read has changed.
    return tuple(db.execute(
        "SELECT count(*), total(version), max(case_id), max(updated_at) FROM cases"
        " WHERE origin = 'external'").fetchone())


def _fingerprint_text(fingerprint: tuple) -> str:
    return "|".join(str(part) for part in fingerprint)


@dataclass
class _Step:
    line_no: int
    clean: dict
    row: dict
    case_id: int | None  # None: a new case
    version: int = 0
    change: dict | None = None


def _plan(db, checked, only_new: bool, dry_run: bool, progress) -> tuple[ImportResult, list]:
    """What importing ``checked`` would do, read from ``db`` without writing."""
    result, plan = ImportResult(dry_run=dry_run), []
    by_id, by_url = {}, {}
    for case_id, external_id, url in db.execute(
            "SELECT case_id, external_id, source_url FROM cases WHERE origin = 'external'"
            " ORDER BY case_id DESC"):  # descending: the first stored case wins, as before
        if external_id:
            by_id[external_id] = case_id
        if url:
            by_url[url] = (case_id, external_id)
    planned_new: dict[str, list[dict]] = {}  # municipality → new rows of this file so far
    for line_no, clean in checked:
        case_id = by_id.get(clean["id"]) if clean["id"] else None
        if case_id is None and clean["source_url"] in by_url:
            case_id, external_id = by_url[clean["source_url"]]
            if clean["id"] and external_id != clean["id"]:
                case_id = None  # another record from the same page: a case of its own
        step = _plan_one(db, line_no, clean, case_id, result, only_new, planned_new)
        if step is not None:
            plan.append(step)
        if progress:
            progress(1)
    return result, plan


def _plan_one(db, line_no, clean, case_id, result, only_new, planned_new) -> _Step | None:
    existing = _case_row(db, case_id) if case_id is not None else None
    if existing is not None:
        clean = dict(clean, id=existing["external_id"])
    elif not clean["id"]:
        clean = dict(clean, id="url-" + hashlib.sha1(clean["source_url"].encode()).hexdigest()[:12])
    row = external_case_row(clean)
    change = {"line": line_no, "external_id": row["external_id"], "title": row["title"]}
    if existing is not None and only_new:
        result.existing += 1
        return None
    if existing is None:
        for other in _likely_duplicates(db, row, planned_new.get(row["municipality"], [])):
            result.duplicates.append({"line": line_no, "title": row["title"],
                                      "case_id": other.get("case_id"),
                                      "other_line": other.get("line"),
                                      "other_title": other["title"],
                                      "other_external_id": other["external_id"]})
        planned_new.setdefault(row["municipality"], []).append(dict(row, line=line_no))
        result.new += 1
        change = dict(change, outcome="new", case_id=None, fields=[])
        result.changes.append(change)
        return _Step(line_no, clean, row, None, change=change)
    stored = _stored_countermeasures(db, case_id)
    fields = [column for column in COMPARED_COLUMNS if existing[column] != row[column]]
    if [m["text"] for m in stored] != clean["countermeasures"]:
        fields.append("countermeasures")
    if not fields:
        result.unchanged += 1
        return None
    _, dropped = _match_countermeasures(stored, clean["countermeasures"])
    result.lost_links.extend(dict(change, case_id=case_id, countermeasure=m["text"],
                                  item_codes=m["item_codes"]) for m in dropped if m["item_codes"])
    result.updated += 1
    change = dict(change, outcome="updated", case_id=case_id, fields=fields,
                  field_labels=[FIELD_NAMES.get(column.removesuffix("_name"), column)
                                for column in fields])
    result.changes.append(change)
    return _Step(line_no, clean, row, case_id, existing["version"], change)


def _apply(db, plan: list[_Step], result: ImportResult) -> None:
    """Write a plan (inside the caller's transaction)."""
    now = utcnow()
    for step in plan:
        if step.case_id is None:
            row = dict(step.row, status="published", created_at=now, updated_at=now,
                       published_at=now)
            case_id = _insert(db, "cases", row)
            step.change["case_id"] = case_id
            db.conn.executemany(
                "INSERT INTO countermeasures (case_id, position, text, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?)",
                [(case_id, position, text, now, now)
                 for position, text in enumerate(step.clean["countermeasures"])])
        else:
            case_id = step.case_id
            _update(db, "cases", case_id, dict(step.row, updated_at=now,
                                                version=step.version + 1))
            _sync_countermeasures(db, case_id, step.clean["countermeasures"], now)
        mark_changed(db, case_id)
        result.changed_case_ids.append(case_id)


def _insert(db, table: str, row: dict) -> int:
    columns = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    return db.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})",
                      list(row.values())).lastrowid


def _update(db, table: str, key: int, values: dict) -> None:
    assignments = ", ".join(f"{column} = ?" for column in values)
    primary = {"cases": "case_id", "countermeasures": "countermeasure_id"}[table]
    db.execute(f"UPDATE {table} SET {assignments} WHERE {primary} = ?", [*values.values(), key])


def _case_row(db, case_id: int) -> dict | None:
    rows = db.execute_returning_dicts("SELECT * FROM cases WHERE case_id = ?", [case_id])
    return rows[0] if rows else None


@functools.lru_cache(maxsize=65536)
def _bigrams(text: str) -> frozenset[str]:
    return frozenset(token for token, _, _ in analysis.tokens(text or ""))


def similarity(a: str, b: str) -> float:
    """Jaccard similarity of the two titles' bigrams (after folding)."""
    first, second = _bigrams(a), _bigrams(b)
    return len(first & second) / len(first | second) if first and second else 0.0


def _likely_duplicates(db, row: dict, same_file: list[dict]) -> list[dict]:
    """Cases of the same municipality, dated within 30 days, with a similar title: stored
    ones (``case_id``) and earlier new records of the same file (``line``).

    The index on (municipality, occurred_on) narrows the stored candidates to the date
    window before any title is compared; a case without a date is always a candidate.
    """
    when = _day(row["occurred_on"] or row["published_on"])
    sql = ("SELECT case_id, external_id, title, occurred_on, published_on FROM cases"
           " WHERE municipality = ? AND origin = 'external'")
    params = [row["municipality"]]
    if when:
        # occurred_on holds 'YYYY-MM-DD' or 'YYYY-MM'; the month of the window's start
        # sorts before every day of that month, so the range keeps both forms.
        low = (when - timedelta(days=DUPLICATE_DAYS)).isoformat()[:7]
        high = (when + timedelta(days=DUPLICATE_DAYS)).isoformat()
        sql += " AND (occurred_on BETWEEN ? AND ? OR occurred_on IS NULL)"
        params += [low, high]
    cursor = db.conn.execute(sql, params)
    columns = [column[0] for column in cursor.description]
    found = []
    for other in [*(dict(zip(columns, values)) for values in cursor), *same_file]:
        other_when = _day(other["occurred_on"] or other["published_on"])
        if when and other_when and abs((when - other_when).days) > DUPLICATE_DAYS:
            continue
        if similarity(row["title"], other["title"]) >= DUPLICATE_SIMILARITY:
            found.append(other)
    return found


@functools.lru_cache(maxsize=65536)
def _day(value: str | None) -> date | None:
    if not value:
        return None
    parts = [int(p) for p in value.split("-")] + [1, 1]
    return date(parts[0], parts[1], parts[2])


def normalize_countermeasure(text: str) -> str:
    """The form two countermeasure texts are compared in: width and case folded,
    whitespace and a closing 。 ignored."""
    folded = re.sub(r"\s+", "", unicodedata.normalize("NFKC", text or "")).lower()
    return folded.rstrip("。.")


def _stored_countermeasures(db, case_id: int) -> list[dict]:
    """A case's countermeasures in order, each with the checklist item codes linked to it."""
    stored = db.execute_returning_dicts(
        "SELECT countermeasure_id, position, text, version FROM countermeasures"
        " WHERE case_id = ? ORDER BY position, countermeasure_id", [case_id])
    codes: dict[int, list[str]] = {}
    for countermeasure_id, code in db.execute(
            "SELECT l.countermeasure_id, l.item_code FROM countermeasure_checklist_items l"
            " JOIN countermeasures m USING (countermeasure_id) WHERE m.case_id = ?"
            " ORDER BY l.item_code", [case_id]):
        codes.setdefault(countermeasure_id, []).append(code)
    return [dict(m, item_codes=codes.get(m["countermeasure_id"], [])) for m in stored]


def _match_countermeasures(stored: list[dict], texts: list[str]) -> tuple[list, list[dict]]:
    """Pair each new text with the stored countermeasure of the same (normalised) text.

    Returns (for each text: its stored row or None, the stored rows no text matched).
    Matching by text, not position, keeps a checklist link on the countermeasure it was
    made on when others are added, removed or reordered.
    """
    unused: dict[str, list[dict]] = {}
    for measure in stored:
        unused.setdefault(normalize_countermeasure(measure["text"]), []).append(measure)
    matched = [(unused.get(normalize_countermeasure(text)) or [None]).pop(0) for text in texts]
    kept = {id(m) for m in matched if m is not None}
    return matched, [m for m in stored if id(m) not in kept]


def _sync_countermeasures(db, case_id: int, texts: list[str], now: str) -> list[dict]:
    """Make the case's countermeasures read ``texts``, in that order.

    A text matching a stored countermeasure keeps that row (and its checklist links);
    the others are new rows. Stored countermeasures no text matches are deleted with
    their links; returned are those that had links ({text, item_codes}).
    """
    stored = _stored_countermeasures(db, case_id)
    matched, dropped = _match_countermeasures(stored, texts)
    for measure in dropped:
        db.execute("DELETE FROM countermeasures WHERE countermeasure_id = ?",
                   [measure["countermeasure_id"]])
    for position, (text, measure) in enumerate(zip(texts, matched)):
        if measure is None:
            _insert(db, "countermeasures", {"case_id": case_id, "position": position,
                                            "text": text, "created_at": now, "updated_at": now})
        elif (measure["position"], measure["text"]) != (position, text):
            _update(db, "countermeasures", measure["countermeasure_id"], {
                "position": position, "text": text, "updated_at": now,
                "version": measure["version"] + 1})
    return [{"text": m["text"], "item_codes": m["item_codes"]} for m in dropped if m["item_codes"]]


# --- reviewers' edits -------------------------------------------------------------------

def external_record(db, case_id: int) -> dict:
    """A stored external case in the shape of an import record (for the edit form)."""
    case = _external_by_id(db, case_id)
    return {
        "id": case["external_id"], "title": case["title"], "municipality": case["municipality"],
        "prefecture": case["prefecture"] or "", "occurred_on": case["occurred_on"] or "",
        "published_on": case["published_on"] or "", "incident_type": case["incident_type"],
        "task": case["task"] or "", "channel": case["channel"] or "",
        "department": case["department_name"] or "", "summary": case["summary"],
        "affected_count": "" if case["affected_count"] is None else str(case["affected_count"]),
        "data_items": "\n".join(json.loads(case["data_items"])),
        "causes": "\n".join(json.loads(case["causes"])),
        "countermeasures": "\n".join(r[0] for r in db.execute(
            "SELECT text FROM countermeasures WHERE case_id = ? ORDER BY position", [case_id])),
        "source_url": case["source_url"] or "", "source_title": case["source_title"] or "",
        "lesson": case["lesson"], "status": case["status"], "version": case["version"],
    }


def _external_by_id(db, case_id: int) -> dict:
    rows = db.execute_returning_dicts(
        "SELECT * FROM cases WHERE case_id = ? AND origin = 'external'", [case_id])
    if not rows:
        raise NotFound(f"external case {case_id}")
    return rows[0]


def update_external_case(db, actor, case_id: int, raw: dict, version) -> list[dict]:
    """A reviewer corrects an external case, naming the ``version`` their form was opened at.

    Invalid (messages by field) and Conflict (the case was saved since ``version``)
    change nothing. Returns the checklist links lost with countermeasures the edit
    removed or rewrote ({text, item_codes}).
    """
    require_role(actor, "reviewer")
    case = _external_by_id(db, case_id)
    clean, errors = check_record(dict(raw, id=case["external_id"]))
    if errors:
        raise Invalid(errors)
    now = utcnow()
    with transaction(db):
        case = _external_by_id(db, case_id)  # again under the write lock: no one slips in
        _check_version(case, version)
        db["cases"].update(case_id, dict(external_case_row(clean), updated_at=now,
                                         version=case["version"] + 1))
        lost = _sync_countermeasures(db, case_id, clean["countermeasures"], now)
        mark_changed(db, case_id)
        audit.record(db, actor, "external_update", case_id=case_id,
                     detail={"lost_links": lost} if lost else None)
    return lost


def set_external_status(db, actor, case_id: int, *, withdrawn: bool, version,
                        reason: str = "") -> None:
    """A reviewer withdraws an external case (it leaves search and lists) or restores it.

    ``version`` is the one the reviewer saw; Conflict if the case was saved since.
    """
    require_role(actor, "reviewer")
    _external_by_id(db, case_id)
    reason = (reason or "").strip()
    if withdrawn and not reason:
        raise Invalid({"reason": ["取り下げる理由を書いてください。"]})
    with transaction(db):
        case = _external_by_id(db, case_id)
        _check_version(case, version)
        db["cases"].update(case_id, {"status": "withdrawn" if withdrawn else "published",
                                     "updated_at": utcnow(), "version": case["version"] + 1})
        mark_changed(db, case_id)
        audit.record(db, actor, "external_withdraw" if withdrawn else "external_restore",
                     case_id=case_id, detail={"reason": reason[:500]})


def _check_version(case: dict, version) -> None:
    if str(case["version"]) != str(version).strip():
        raise Conflict(f"case {case['case_id']} is at version {case['version']}")
