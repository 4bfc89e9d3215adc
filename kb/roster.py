"""The staff roster file (職員名簿) from 人事: reading, checking, and importing it.

A roster file is CSV as personnel systems export it: CP932, UTF-8 or UTF-8 with BOM,
comma or tab separated, with Japanese or English headers (``HEADERS``). Every row is
checked before anything is written; any problem is reported with its line (as an editor
counts lines) and column in Japanese, and then nothing is written. People are matched by
職員番号, which is also the login id of a new roster account; roster accounts have no
password (``password_hash`` '') until their owner sets one. What people's statuses mean
over time is ``kb.staff``'s.
"""

import csv
import hashlib
import io
import json
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import yaml

from kb import audit, dates, enrolment
from kb.db import transaction, utcnow
from kb.exceptions import Conflict, Invalid, KBError
from kb.roles import require_role
from kb.staff import STATUS_LABELS, parse_day, status_code
from kb.users import LOGIN_PATTERN, MAX_NAME_LENGTH

COLUMNS = ("employee_number", "name", "name_kana", "department", "position", "status",
           "status_from", "status_until", "email")
COLUMN_LABELS = {
    "employee_number": "職員番号", "name": "氏名", "name_kana": "氏名カナ", "department": "所属",
    "position": "役職", "status": "在籍区分", "status_from": "区分開始日",
    "status_until": "区分終了日", "email": "メールアドレス",
}
REQUIRED_COLUMNS = ("employee_number", "name", "department")
# Header (NFKC, lower case, spaces dropped) → column.
HEADERS = {
    **{label: key for key, label in COLUMN_LABELS.items()},
    **{key: key for key in COLUMNS},
    "職員コード": "employee_number", "職員id": "employee_number", "employeeid": "employee_number",
    "フリガナ": "name_kana", "ふりがな": "name_kana", "カナ氏名": "name_kana", "氏名(カナ)": "name_kana",
    "kana": "name_kana", "所属コード": "department", "所属名": "department",
    "職名": "position", "在籍状況": "status", "開始日": "status_from", "終了日": "status_until",
    "メール": "email", "e-mail": "email", "mail": "email",
}
# What a change touched, in the words of the preview.
FIELD_LABELS = {**COLUMN_LABELS, "active": "有効・無効", "roles": "所属長の役割",
                "assignment": "所属の記録"}

MAX_BYTES = 20 * 2**20
MAX_TEXT = {"name_kana": 60, "position": 60, "email": 254}
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")
# Share of active accounts an import may deactivate without --yes (a truncated or wrong
# file must not lock the office out).
DEACTIVATION_GUARD = 0.10
SHOWN_LINES = 5


@dataclass(frozen=True)
class Problem:
    """One problem of a roster file: line None is the whole file."""

    line: int | None
    column: str | None
    message: str

    def as_dict(self) -> dict:
        return {"line": self.line, "column": self.column, "message": self.message}


class RosterInvalid(Invalid):
    """The roster file was refused; ``problems`` lists every problem found, in file order."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems, key=lambda p: (p.line or 0, _column_order(p.column)))
        errors: dict[str, list[str]] = {}
        for problem in self.problems:
            where = " ".join(filter(None, [f"{problem.line}行目" if problem.line else "ファイル",
                                           problem.column]))
            errors.setdefault(where, []).append(problem.message)
        super().__init__(errors)


class TooManyDeactivations(KBError):
    """The import would deactivate more than ``DEACTIVATION_GUARD`` of the active accounts
    and was not confirmed; ``plan`` says who."""

    def __init__(self, plan: "Plan"):
        super().__init__(plan.guard_message())
        self.plan = plan


class StalePreview(Conflict):
    """The database changed since the preview was made: importing now would do something
    other than what was shown (``plan`` is what it would do now). Nothing was written."""

    def __init__(self, plan: "Plan"):
        super().__init__("the roster changed since the preview")
        self.plan = plan


def _column_order(column: str | None) -> int:
    labels = list(COLUMN_LABELS.values())
    return labels.index(column) if column in labels else -1


@dataclass(frozen=True)
class RosterRow:
    line: int
    employee_number: str
    name: str
    name_kana: str
    department_id: int
    department_code: str
    position: str
    status: str
    status_from: str | None
    status_until: str | None
    email: str


# --- reading ----------------------------------------------------------------------------

def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text or "").strip().lower().replace(" ", "")


def _decode(data: bytes) -> tuple[str, str | None]:
    """The text, and the encoding named when some bytes could not be read (else None).

    A BOM means UTF-8; otherwise UTF-8 then CP932 are tried strictly. When neither reads
    every byte, the one that reads more is used with replacement characters, so each
    unreadable cell can be reported with its line and column.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        text = data[3:].decode("utf-8", errors="replace")
        return text, ("UTF-8" if "\ufffd" in text else None)
    for encoding in ("utf-8", "cp932"):
        try:
            return data.decode(encoding), None
        except UnicodeDecodeError:
            continue
    candidates = [(data.decode(encoding, errors="replace"), name)
                  for encoding, name in (("utf-8", "UTF-8"), ("cp932", "Shift_JIS（CP932）"))]
    return min(candidates, key=lambda candidate: candidate[0].count("\ufffd"))


def read_roster(db, data: bytes) -> tuple[list[RosterRow], list[str]]:
    """The checked rows of a roster file, and the header names that were ignored.

    Raises RosterInvalid listing every problem (nothing is written by reading).
    """
    if len(data) > MAX_BYTES:
        raise RosterInvalid([Problem(None, None, f"ファイルが大きすぎます（{MAX_BYTES // 2**20} MB まで）。")])
    text, bad_encoding = _decode(data)
    if "\x00" in text:
        raise RosterInvalid([Problem(None, None, "CSVファイルではないようです（UTF-16 や Excel 形式の"
                                                 "ファイルは、CSV（UTF-8 か Shift_JIS）で保存し直してください）。")])
    first_line = text.split("\n", 1)[0]
    delimiter = "\t" if first_line.count("\t") > first_line.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except (StopIteration, csv.Error):
        header = []
    if not any(cell.strip() for cell in header):
        raise RosterInvalid([Problem(None, None, "ファイルが空です。1行目に列の名前、2行目から職員を書いてください。")])
    keys, ignored, problems = [], [], []
    for cell in header:
        key = HEADERS.get(_fold(cell))
        if key is not None and key in keys:
            problems.append(Problem(1, COLUMN_LABELS[key], f"「{cell.strip()}」の列が2つあります。"))
            key = None
        if key is None and cell.strip():
            ignored.append(cell.strip())
        keys.append(key)
    for key in REQUIRED_COLUMNS:
        if key not in keys:
            problems.append(Problem(1, COLUMN_LABELS[key], f"見出し行に「{COLUMN_LABELS[key]}」（{key}）"
                                                           "の列がありません。"))
    if problems:
        raise RosterInvalid(problems)

    departments = _department_lookup(db)
    rows, unknown_departments, seen = [], {}, {}
    line_no = reader.line_num + 1
    try:
        for cells in reader:
            if any(cell.strip() for cell in cells) and _repeats_header(cells, keys):
                # A second sheet pasted below the first, or two exports put together.
                problems.append(Problem(line_no, None, "見出し行がもう一度あります。別のシートや別のファイルを"
                                                       "貼り付けていないか確かめ、見出しは1行目だけにしてください。"))
            elif any(cell.strip() for cell in cells):
                raw = {key: cell for key, cell in zip(keys, cells) if key}
                if bad_encoding:
                    problems += [Problem(line_no, COLUMN_LABELS[key] if key else f"{i + 1}列目",
                                         f"読み取れない文字があります（{bad_encoding} として読めないバイト）。"
                                         "文字コードを UTF-8 か Shift_JIS にそろえてください。")
                                 for i, (key, cell) in enumerate(zip(keys, cells)) if "\ufffd" in cell]
                if len(cells) > len(keys) and any(c.strip() for c in cells[len(keys):]):
                    problems.append(Problem(line_no, f"{len(keys) + 1}列目",
                                            f"列が見出しより多くあります（{len(cells)}列）。"
                                            "値の中のカンマは \"…\" で囲んでください。"))
                row = _check_row(line_no, raw, departments, unknown_departments, seen, problems)
                if row is not None:
                    rows.append(row)
            line_no = reader.line_num + 1
    except csv.Error as exc:
        problems.append(Problem(line_no, None, f"CSVとして読めません（{exc}）。"))
    for value, lines in unknown_departments.items():
        shown = "、".join(map(str, lines[:SHOWN_LINES])) + ("ほか" if len(lines) > SHOWN_LINES else "")
        problems.append(Problem(lines[0], COLUMN_LABELS["department"],
                                f"所属「{value}」は登録されていません（{shown}行目、計{len(lines)}行）。"
                                "所属のコードか正確な名前で書いてください。"))
    if not rows and not problems:
        problems.append(Problem(None, None, "職員の行がありません。"))
    if problems:
        raise RosterInvalid(problems)
    return rows, ignored


def _repeats_header(cells: list[str], keys: list) -> bool:
    """Whether a row names the same columns as the header (in any order)."""
    named = [HEADERS.get(_fold(cell)) for cell in cells if cell.strip()]
    return None not in named and set(named) >= set(REQUIRED_COLUMNS)


def _department_lookup(db) -> dict[str, list[dict]]:
    """Active departments by code and by exact name (a name may be shared)."""
    lookup: dict[str, list[dict]] = {}
    for row in db.query("SELECT department_id, code, name FROM departments WHERE active = 1"):
        lookup.setdefault(row["code"], []).append(row)
        if row["name"] != row["code"]:
            lookup.setdefault(row["name"], []).append(row)
    return lookup


def _check_row(line: int, raw: dict, departments, unknown_departments, seen,
               problems: list[Problem]) -> RosterRow | None:
    found = []

    def fail(key: str, message: str) -> None:
        found.append(Problem(line, COLUMN_LABELS[key], message))

    value = {key: unicodedata.normalize("NFKC", raw.get(key) or "").strip() for key in COLUMNS}
    number = value["employee_number"]
    if not number:
        fail("employee_number", "職員番号がありません。")
    elif not LOGIN_PATTERN.match(number):
        fail("employee_number", f"職員番号「{number}」は半角英数字と . _ - の3〜40文字にしてください"
                                "（ログインIDになります）。")
    elif number.lower() in seen:
        fail("employee_number", f"職員番号「{number}」は{seen[number.lower()]}行目と重複しています。")
    else:
        seen[number.lower()] = line
    # NFKC would turn a name's full-width spaces into half-width ones: keep the name as written.
    name = (raw.get("name") or "").strip()
    if not name:
        fail("name", "氏名がありません。")
    elif len(name) > MAX_NAME_LENGTH:
        fail("name", f"氏名は{MAX_NAME_LENGTH}文字以内にしてください。")
    for key, limit in MAX_TEXT.items():
        if len(value[key]) > limit:
            fail(key, f"{COLUMN_LABELS[key]}は{limit}文字以内にしてください。")
    department = None
    matches = departments.get(value["department"] or (raw.get("department") or "").strip(), [])
    if not value["department"]:
        fail("department", "所属がありません。")
    elif len({d["department_id"] for d in matches}) > 1:
        fail("department", f"所属「{value['department']}」という名前の所属が複数あります。コードで書いてください。")
    elif matches:
        department = matches[0]
    else:
        unknown_departments.setdefault(value["department"], []).append(line)
    status = status_code(value["status"])
    if status is None:
        fail("status", f"在籍区分「{value['status']}」は、在職・休職・病気休暇・産前産後休暇・育児休業・"
                       "介護休暇・退職のどれかにしてください（在職は空欄でも構いません）。")
    days = {}
    for key in ("status_from", "status_until"):
        try:
            days[key] = parse_day(value[key])
        except ValueError:
            fail(key, f"{COLUMN_LABELS[key]}「{value[key]}」は存在する日付にしてください"
                      "（YYYY-MM-DD、YYYY/M/D、YYYY年M月D日、令和7年4月1日 など）。")
            days[key] = None
    if days["status_from"] and days["status_until"] and days["status_until"] < days["status_from"]:
        fail("status_until", f"区分終了日（{days['status_until']}）が区分開始日（{days['status_from']}）"
                             "より前です。")
    if value["email"] and not EMAIL_PATTERN.match(value["email"]):
        fail("email", f"メールアドレス「{value['email']}」はメールアドレスの形ではありません。")
    problems.extend(found)
    if found or department is None:
        return None
    return RosterRow(line=line, employee_number=number, name=name, name_kana=value["name_kana"],
                     department_id=department["department_id"], department_code=department["code"],
                     position=value["position"], status=status, status_from=days["status_from"],
                     status_until=days["status_until"], email=value["email"])


def load_positions(path) -> frozenset[str]:
    """The 役職 that make a person the 所属長 (manager), folded, from a YAML file."""
    try:
        content = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        names = content.get("manager") or []
        if not isinstance(names, list):
            raise TypeError
    except (OSError, yaml.YAMLError, AttributeError, TypeError) as exc:
        raise Invalid({"役職の対応表": [f"{path} を読めません（{exc.__class__.__name__}）。"
                                  "manager: の下に役職名を並べた YAML にしてください。"]}) from None
    return frozenset(_fold(str(name)) for name in names if str(name).strip())


# --- planning and importing ---------------------------------------------------------------

@dataclass
class Plan:
    """What an import does (or would do): people added, updated (with the fields),
    unchanged, and accounts deactivated (by 退職 or missing from the file)."""

    added: list[dict] = field(default_factory=list)
    updated: list[dict] = field(default_factory=list)
    unchanged: int = 0
    deactivated: list[dict] = field(default_factory=list)
    active_accounts: int = 0
    ignored_columns: list[str] = field(default_factory=list)
    applied: bool = False
    _writes: list = field(default_factory=list, repr=False)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.deactivated)

    def fingerprint(self) -> str:
        """A digest of everything the preview shows (who is added, each change old → new,
        the unchanged count, who is deactivated): equal digests mean the same import."""
        shown = {"added": self.added, "updated": self.updated, "unchanged": self.unchanged,
                 "deactivated": self.deactivated}
        return hashlib.sha256(json.dumps(shown, sort_keys=True, ensure_ascii=False)
                              .encode("utf-8")).hexdigest()

    @property
    def needs_confirmation(self) -> bool:
        return len(self.deactivated) > self.active_accounts * DEACTIVATION_GUARD

    def summary(self) -> dict:
        """The counts, in the shape of ``import-staff --json``."""
        return {"added": len(self.added), "updated": len(self.updated),
                "unchanged": self.unchanged, "deactivated": len(self.deactivated)}

    def guard_message(self) -> str:
        names = "、".join(d["name"] for d in self.deactivated[:SHOWN_LINES])
        more = f" ほか{len(self.deactivated) - SHOWN_LINES}人" if len(self.deactivated) > SHOWN_LINES else ""
        return (f"有効なアカウント{self.active_accounts}件のうち{len(self.deactivated)}件"
                f"（{DEACTIVATION_GUARD:.0%}超）を無効にする取り込みです（{names}{more}）。"
                "ファイルが途中で切れていないか確かめ、よければ確認（--yes）を付けて取り込んでください。")


def import_staff(db, actor, data: bytes, filename: str = "", *, managers: frozenset,
                 deactivate_missing: bool = False, confirmed: bool = False,
                 dry_run: bool = False, today: date | None = None,
                 expected: str | None = None) -> Plan:
    """Check every row of a roster file, then apply it in one transaction. Admins only.

    Raises RosterInvalid (every problem with line and column) and writes nothing when any
    row is bad. ``managers`` are the folded 役職 that make a person 所属長 (load_positions).
    With ``deactivate_missing`` active roster accounts absent from the file are
    deactivated. An import deactivating more than 10 % of the active accounts raises
    TooManyDeactivations unless ``confirmed``. ``dry_run`` returns the plan, writing
    nothing. Re-importing the same file changes nothing. ``today`` dates the changes
    (transfers, statuses without a 区分開始日); tests pass it. ``expected`` is the
    ``Plan.fingerprint()`` of a preview: when the import would now differ from it (the
    roster changed since), StalePreview is raised and nothing is written.
    """
    require_role(actor, "admin")
    rows, ignored = read_roster(db, data)
    today = today or dates.office_today()
    if dry_run:
        plan = _plan(db, rows, managers, deactivate_missing, today)
        plan.ignored_columns = ignored
        return plan
    with transaction(db):
        # Planned inside the write transaction: nothing can change between plan and writes.
        plan = _plan(db, rows, managers, deactivate_missing, today)
        plan.ignored_columns = ignored
        if expected is not None and plan.fingerprint() != expected:
            raise StalePreview(plan)
        if plan.needs_confirmation and not confirmed:
            raise TooManyDeactivations(plan)
        if plan.changed:
            _apply(db, actor, plan, today)
            audit.record(db, actor, "staff_import", target=filename or None, detail={
                **plan.summary(), "deactivate_missing": deactivate_missing,
                "deactivated_employee_numbers": [d["employee_number"] for d in plan.deactivated],
            })
            plan.applied = True
    return plan


def import_staff_file(db, actor, path, **options) -> Plan:
    """Import the roster file at ``path`` (see ``import_staff``)."""
    path = Path(path)
    if path.stat().st_size > MAX_BYTES:
        raise RosterInvalid([Problem(None, None, f"ファイルが大きすぎます（{MAX_BYTES // 2**20} MB まで）。")])
    return import_staff(db, actor, path.read_bytes(), path.name, **options)


def _plan(db, rows: list[RosterRow], managers: frozenset, deactivate_missing: bool,
          today: date) -> Plan:
    plan = Plan(active_accounts=db.execute("SELECT count(*) FROM users WHERE active = 1").fetchone()[0])
    existing = {row["employee_number"].lower(): row for row in db.query(
        "SELECT user_id, login, display_name, name_kana, email, position, department_id, active,"
        " employee_number, source FROM users WHERE employee_number IS NOT NULL")}
    managers_now = {row[0] for row in db.execute("SELECT user_id FROM user_roles WHERE role = 'manager'")}
    last_status = {row["user_id"]: row for row in db.query(
        "SELECT * FROM staff_status_periods WHERE period_id IN (SELECT max(period_id)"
        " FROM staff_status_periods WHERE source = 'roster' GROUP BY user_id)")}
    local_logins = {row[0].lower() for row in db.execute(
        "SELECT login FROM users WHERE employee_number IS NULL")}
    placed = {row[0] for row in db.execute("SELECT user_id FROM staff_assignments WHERE ends_on IS NULL")}
    department_names = {row[0]: row[1] for row in db.execute("SELECT department_id, name FROM departments")}
    problems = []
    # Excel drops the leading zeros of a number column when it opens and re-saves a CSV:
    # 「00123」 would come back as a new person 「123」 (and the real one left behind).
    unpadded = {key.lstrip("0"): user["employee_number"] for key, user in existing.items()
                if key.isdigit() and key.lstrip("0")}
    zeros_lost = []
    for row in rows:
        user = existing.get(row.employee_number.lower())
        if user is None and row.employee_number.isdigit() \
                and unpadded.get(row.employee_number.lstrip("0"), row.employee_number) != row.employee_number:
            zeros_lost.append((row, unpadded[row.employee_number.lstrip("0")]))
            continue
        is_manager = _fold(row.position) in managers
        retired = row.status == "retired" and (row.status_from or today.isoformat()) <= today.isoformat()
        entry = {"line": row.line, "employee_number": row.employee_number, "name": row.name,
                 "department_code": row.department_code,
                 "department_name": department_names[row.department_id], "position": row.position,
                 "status": _status_text(row.status, row.status_from, row.status_until)}
        if user is None:
            if row.employee_number.lower() in local_logins:
                problems.append(Problem(row.line, COLUMN_LABELS["employee_number"],
                                        f"ログインID「{row.employee_number}」の（名簿にない）アカウントが"
                                        "既にあります。そのアカウントのログインIDを変えてから取り込んでください。"))
                continue
            plan.added.append(entry)
            plan._writes.append(("add", row, None, {"manager": is_manager, "active": not retired}))
            continue
        fields = [key for key, column in (("name", "display_name"), ("name_kana", "name_kana"),
                                          ("email", "email"), ("position", "position"),
                                          ("department", "department_id"))
                  if user[column] != getattr(row, "department_id" if key == "department" else key)]
        if _status_differs(last_status.get(user["user_id"]), row):
            fields.append("status")
        # An import deactivates for 退職 and reactivates only what an import deactivated (by
        # 退職 or by --deactivate-missing): an account an admin deactivated stays so.
        last = last_status.get(user["user_id"])
        active = not retired and (bool(user["active"]) or user["user_id"] not in placed
                                  or (last is not None and last["status"] == "retired"))
        if bool(user["active"]) != active:
            fields.append("active")
        if (user["user_id"] in managers_now) != is_manager:
            fields.append("roles")
        if active and "active" not in fields and user["user_id"] not in placed:
            # Active (an admin reactivated them) but in no 所属 since an import took them
            # out: without a new assignment they would never count as anyone's staff.
            fields.append("assignment")
        if not fields:
            plan.unchanged += 1
            continue
        entry["fields"] = fields
        entry["changes"] = [_change(key, user, row, last, active, is_manager, department_names)
                            for key in fields]
        if user["active"] and retired:
            plan.deactivated.append(dict(entry, reason="retired"))
        else:
            plan.updated.append(entry)
        plan._writes.append(("update", row, user, {"manager": is_manager, "active": active,
                                                    "fields": fields}))
    if zeros_lost:
        first, known = zeros_lost[0]
        lines = [row.line for row, _ in zeros_lost]
        shown = "、".join(map(str, lines[:SHOWN_LINES])) + ("ほか" if len(lines) > SHOWN_LINES else "")
        problems.append(Problem(first.line, COLUMN_LABELS["employee_number"],
                                f"職員番号の先頭の0が消えているようです（「{first.employee_number}」は"
                                f"登録済みの「{known}」と同じ人ではありませんか。{shown}行目、計{len(lines)}行）。"
                                "Excel で開いて保存すると先頭の0が消えます。人事から受け取ったままのファイルか、"
                                "職員番号の列を文字列にして保存したファイルを取り込んでください。"))
    if problems:
        raise RosterInvalid(problems)
    if deactivate_missing:
        listed = {row.employee_number.lower() for row in rows}
        for key, user in sorted(existing.items()):
            if user["source"] == "roster" and user["active"] and key not in listed:
                plan.deactivated.append({"line": None, "employee_number": user["employee_number"],
                                         "name": user["display_name"], "reason": "missing",
                                         "department_code": None, "fields": ["active"]})
                plan._writes.append(("missing", None, user, {}))
    return plan


def _status_text(status: str, starts_on: str | None, ends_on: str | None) -> str:
    """「育児休業（2026-04-01〜2027-03-31）」: a status as the preview shows it."""
    days = f"{starts_on or ''}〜{ends_on or ''}" if starts_on or ends_on else ""
    return STATUS_LABELS[status] + (f"（{days}）" if days else "")


def _change(key: str, user: dict, row: RosterRow, last: dict | None, active: bool,
            is_manager: bool, department_names: dict) -> dict:
    """One changed field of a person, old → new, in the words of the preview."""
    if key == "department":
        old, new = department_names.get(user["department_id"], ""), department_names[row.department_id]
    elif key == "status":
        old = _status_text(last["status"], last["starts_on"], last["ends_on"]) if last else "（記録なし）"
        new = _status_text(row.status, row.status_from, row.status_until)
    elif key == "active":
        old, new = ("有効" if user["active"] else "無効"), ("有効" if active else "無効")
    elif key == "roles":
        old, new = ("なし", "所属長") if is_manager else ("所属長", "なし")
    elif key == "assignment":
        old, new = "なし", department_names[row.department_id]
    else:
        old, new = user["display_name" if key == "name" else key] or "", getattr(row, key)
    return {"field": key, "label": FIELD_LABELS[key], "old": old, "new": new}


def _status_differs(last: dict | None, row: RosterRow) -> bool:
    """Whether the row says something about the status the last roster statement did not."""
    if last is None:
        return True
    return (last["status"] != row.status or last["ends_on"] != row.status_until
            or (row.status_from is not None and row.status_from != last["starts_on"]))


def _apply(db, actor, plan: Plan, today: date) -> None:
    now, day = utcnow(), today.isoformat()
    yesterday = (today - timedelta(days=1)).isoformat()
    actor_id = getattr(actor, "user_id", None)
    adds = [(row, options) for kind, row, _, options in plan._writes if kind == "add"]
    # No password hashing here: '' means "no password yet" and authenticate refuses it.
    db.conn.executemany(
        "INSERT INTO users (login, display_name, department_id, password_hash, active, created_at,"
        " updated_at, employee_number, name_kana, email, position, source)"
        " VALUES (?, ?, ?, '', ?, ?, ?, ?, ?, ?, ?, 'roster')",
        [(row.employee_number, row.name, row.department_id, int(options["active"]), now, now,
          row.employee_number, row.name_kana, row.email, row.position) for row, options in adds])
    ids = {number.lower(): user_id for user_id, number in db.execute(
        "SELECT user_id, employee_number FROM users WHERE employee_number IS NOT NULL")}
    roles, statuses, assignments = [], [], []
    for row, options in adds:
        user_id = ids[row.employee_number.lower()]
        roles.append((user_id, "staff"))
        if options["manager"]:
            roles.append((user_id, "manager"))
        statuses.append((user_id, row))
        assignments.append((user_id, row.department_id, day))
    for kind, row, user, options in plan._writes:
        if kind == "missing":
            _close_assignment(db, user["user_id"], day, yesterday)
            db.execute("UPDATE users SET active = 0, updated_at = ?, version = version + 1,"
                       " session_generation = session_generation + 1 WHERE user_id = ?",
                       [now, user["user_id"]])
            continue
        if kind != "update":
            continue
        user_id, fields = user["user_id"], options["fields"]
        db.execute(
            "UPDATE users SET display_name = ?, name_kana = ?, email = ?, position = ?,"
            " department_id = ?, active = ?, source = 'roster', updated_at = ?, version = version + 1,"
            " session_generation = session_generation + ? WHERE user_id = ?",
            [row.name, row.name_kana, row.email, row.position, row.department_id,
             int(options["active"]), now, int("active" in fields and not options["active"]), user_id])
        if "roles" in fields:
            if options["manager"]:
                roles.append((user_id, "manager"))
            else:
                db.execute("DELETE FROM user_roles WHERE user_id = ? AND role = 'manager'", [user_id])
        if "status" in fields:
            statuses.append((user_id, row))
        if "department" in fields or "assignment" in fields \
                or ("active" in fields and options["active"]):
            _close_assignment(db, user_id, day, yesterday)
            assignments.append((user_id, row.department_id, day))
    db.conn.executemany("INSERT OR IGNORE INTO user_roles (user_id, role) VALUES (?, ?)", roles)
    # Without a 区分開始日 a statement starts on the day of the import (or on its 区分終了日,
    # when that has already passed, so that a period never ends before it starts).
    db.conn.executemany(
        "INSERT INTO staff_status_periods (user_id, status, starts_on, ends_on, source, reason,"
        " changed_by, created_at) VALUES (?, ?, ?, ?, 'roster', '', ?, ?)",
        [(user_id, row.status, row.status_from or min(day, row.status_until or day), row.status_until,
          actor_id, now) for user_id, row in statuses])
    db.conn.executemany(
        "INSERT INTO staff_assignments (user_id, department_id, starts_on) VALUES (?, ?, ?)",
        assignments)
    # Open 自己点検 follow at once: newcomers and returners see the banner and are invited.
    enrolment.refresh_people(
        db, [ids[row.employee_number.lower()] for row, _ in adds]
        + [user["user_id"] for kind, _, user, _ in plan._writes if kind in ("update", "missing")],
        today=today)


def _close_assignment(db, user_id: int, day: str, yesterday: str) -> None:
    """End the open assignment the day before ``day`` (one that began today leaves no trace)."""
    db.execute("DELETE FROM staff_assignments WHERE user_id = ? AND ends_on IS NULL AND starts_on >= ?",
               [user_id, day])
    db.execute("UPDATE staff_assignments SET ends_on = ? WHERE user_id = ? AND ends_on IS NULL",
               [yesterday, user_id])
