"""Staff: status periods (在職, 休職, 病気休暇, 産休, 育休, 介護休暇, 退職), who could take
part in 課 X between two dates, and the staff list.

Status periods are statements, never rewritten: (status, from, until, roster or manual,
reason, who). A person's status on a day is the one of the latest statement covering that
day, else 在職; which department they were in on a day is kept in ``staff_assignments``
(written by the roster import, ``kb.roster``). Together they answer "who was in 課 X and
able to take part between A and B" for any past period.
"""

import json
import re
import unicodedata
from datetime import date, timedelta

from kb import audit, dates
from kb.db import transaction, utcnow
from kb.exceptions import Conflict, Invalid, NotFound
from kb.roles import ROLES, require_role

STATUSES = ("active", "suspended", "sick_leave", "maternity_leave", "childcare_leave",
            "care_leave", "retired")
STATUS_LABELS = {
    "active": "在職", "suspended": "休職", "sick_leave": "病気休暇",
    "maternity_leave": "産前産後休暇", "childcare_leave": "育児休業", "care_leave": "介護休暇",
    "retired": "退職",
}
# Statuses in which a person can take part (a self-check, a workshop); every leave and 退職
# take a person out of the denominator.
ABLE_STATUSES = frozenset({"active"})
# Besides the labels and codes, the short names people write (folded: NFKC, no spaces).
STATUS_ALIASES = {"": "active", "産休": "maternity_leave", "育休": "childcare_leave",
                  "病休": "sick_leave", "介護休業": "care_leave", "退職済": "retired"}

def status_code(text: str) -> str | None:
    """The status code of a code, a Japanese label or a short name ('' is 在職); else None."""
    folded = unicodedata.normalize("NFKC", text or "").strip().lower().replace(" ", "")
    if folded in STATUSES:
        return folded
    for code, label in STATUS_LABELS.items():
        if folded == label:
            return code
    return STATUS_ALIASES.get(folded)


def parse_day(text) -> str | None:
    """'2026-04-01', '2026/4/1', '2026年4月1日', '20260401', '令和8年4月1日', 'R8.4.1' → ISO.

    '' and None are None; anything else that is not a real day raises ValueError (a
    ``kb.dates.DateError``, whose text is the message for a form field). The roster and
    the status form read days as every date field does: ``kb.dates.parse_day``.
    """
    return dates.parse_day(text)


# --- status history ------------------------------------------------------------------------

def change_status(db, actor, user_id: int, *, status: str, starts_on, ends_on=None, reason: str,
                  today: date | None = None, version=None) -> None:
    """Record a manual status period with a reason (admins only), audited.

    It overrides the roster for its dates until the roster says something new about the
    person. 退職 starting today or earlier also deactivates the account. Raises Invalid
    with messages by field, and Conflict when ``version`` (the ``users.version`` the form
    was opened with; None skips the check, as the command line does) is no longer the
    account's: the change raises it, so two admins cannot both act on what they saw.
    """
    require_role(actor, "admin")
    user = _user_row(db, user_id)
    today = today or dates.office_today()
    errors: dict[str, list[str]] = {}
    code = status_code(status) if isinstance(status, str) else None
    if code is None or not str(status).strip():
        errors["status"] = ["在籍区分を選んでください。"]
    days = {}
    for key, value in (("starts_on", starts_on), ("ends_on", ends_on)):
        try:
            days[key] = parse_day(value)
        except ValueError as error:
            errors[key] = [str(error)]
            days[key] = None
    if not days["starts_on"] and "starts_on" not in errors:
        errors["starts_on"] = ["開始日を入力してください。"]
    if days["starts_on"] and days["ends_on"] and days["ends_on"] < days["starts_on"]:
        errors["ends_on"] = ["終了日が開始日より前です。"]
    reason = (reason or "").strip()
    if not reason:
        errors["reason"] = ["変更の理由を書いてください。"]
    elif len(reason) > 500:
        errors["reason"] = ["理由は500文字以内にしてください。"]
    if errors:
        raise Invalid(errors)
    deactivate = code == "retired" and days["starts_on"] <= today.isoformat() and user["active"]
    with transaction(db):
        # Compared inside the write transaction: the version checked is the one replaced.
        current = db.execute("SELECT version FROM users WHERE user_id = ?", [user_id]).fetchone()[0]
        if version is not None and str(version) != str(current):
            raise Conflict(f"user {user_id} changed since version {version}")
        db["staff_status_periods"].insert({
            "user_id": user_id, "status": code, "starts_on": days["starts_on"],
            "ends_on": days["ends_on"], "source": "manual", "reason": reason,
            "changed_by": getattr(actor, "user_id", None), "created_at": utcnow()})
        if deactivate:
            db.execute("UPDATE users SET active = 0, updated_at = ?, version = version + 1,"
                       " session_generation = session_generation + 1 WHERE user_id = ?",
                       [utcnow(), user_id])
        else:
            db.execute("UPDATE users SET updated_at = ?, version = version + 1 WHERE user_id = ?",
                       [utcnow(), user_id])
        # Open 自己点検 follow at once: a leave drops the banner, a return brings it back.
        from kb import enrolment  # here, not at the top: enrolment → participation → staff

        enrolment.refresh_people(db, [user_id], today=today)
        audit.record(db, actor, "staff_status_change", target=user["login"], detail={
            "status": code, "starts_on": days["starts_on"], "ends_on": days["ends_on"],
            "reason": reason, "deactivated": bool(deactivate)})


def status_history(db, actor, user_id: int) -> list[dict]:
    """A person's status statements, oldest first, with labels and who made manual ones."""
    require_role(actor, "admin")
    _user_row(db, user_id)
    rows = db.execute_returning_dicts(
        "SELECT p.*, u.login AS changed_by_login, u.display_name AS changed_by_name"
        " FROM staff_status_periods p"
        " LEFT JOIN users u ON u.user_id = p.changed_by WHERE p.user_id = ? ORDER BY p.period_id",
        [user_id])
    return [dict(row, label=STATUS_LABELS[row["status"]]) for row in rows]


def _user_row(db, user_id: int) -> dict:
    rows = db.execute_returning_dicts("SELECT * FROM users WHERE user_id = ?", [user_id])
    if not rows:
        raise NotFound(f"user {user_id}")
    return rows[0]


def _statuses_by_user(db, where: str = "", params=()) -> dict[int, list[dict]]:
    periods: dict[int, list[dict]] = {}
    for row in db.query(f"SELECT user_id, status, starts_on, ends_on FROM staff_status_periods"
                        f" {where} ORDER BY period_id", params):
        periods.setdefault(row["user_id"], []).append(row)
    return periods


def status_on(periods: list[dict], day: str) -> str:
    """The status on ``day`` (ISO): the latest statement covering it, else 在職."""
    for period in reversed(periods):
        if period["starts_on"] <= day and (period["ends_on"] is None or period["ends_on"] >= day):
            return period["status"]
    return "active"


def _able_days(periods: list[dict], start: date, end: date) -> int:
    """Days from ``start`` to ``end`` (inclusive) whose status lets a person take part."""
    cuts = {start, end + timedelta(days=1)}
    for period in periods:
        for boundary in (period["starts_on"], period["ends_on"]):
            if boundary:
                cut = date.fromisoformat(boundary) + timedelta(days=boundary == period["ends_on"])
                if start < cut <= end:
                    cuts.add(cut)
    cuts = sorted(cuts)
    return sum((b - a).days for a, b in zip(cuts, cuts[1:])
               if status_on(periods, a.isoformat()) in ABLE_STATUSES)


def eligible_staff(db, department_id: int, start, end) -> list[dict]:
    """Roster people in the department (or one under it) and able to take part on at least
    one day from ``start`` to ``end`` (inclusive), as the history says it was then.

    Each is ``{"user_id", "employee_number", "login", "name", "days"}``, ``days`` being the
    days of the period they were both there and able; ordered by 職員番号. Local accounts
    have no roster history and are never counted.
    """
    start, end = date.fromisoformat(parse_day(start)), date.fromisoformat(parse_day(end))
    scope = ("WITH RECURSIVE scope(department_id) AS (SELECT ? UNION SELECT d.department_id"
             " FROM departments d JOIN scope s ON d.parent_id = s.department_id)")
    overlap = ("a.department_id IN (SELECT department_id FROM scope) AND a.starts_on <= ?"
               " AND (a.ends_on IS NULL OR a.ends_on >= ?)")
    params = [department_id, end.isoformat(), start.isoformat()]
    stints: dict[int, list[tuple[date, date]]] = {}
    people = {}
    for row in db.query(f"{scope} SELECT a.user_id, a.starts_on, a.ends_on, u.employee_number,"
                        f" u.login, u.display_name FROM staff_assignments a"
                        f" JOIN users u ON u.user_id = a.user_id WHERE {overlap}", params):
        stints.setdefault(row["user_id"], []).append((
            max(start, date.fromisoformat(row["starts_on"])),
            min(end, date.fromisoformat(row["ends_on"])) if row["ends_on"] else end))
        people[row["user_id"]] = row
    periods = _statuses_by_user(db, "WHERE user_id IN (SELECT value FROM json_each(?))",
                                [json.dumps(sorted(stints))])
    found = []
    for user_id, spans in stints.items():
        days = sum(_able_days(periods.get(user_id, []), a, b) for a, b in spans)
        if days:
            person = people[user_id]
            found.append({"user_id": user_id, "employee_number": person["employee_number"],
                          "login": person["login"], "name": person["display_name"], "days": days})
    return sorted(found, key=lambda p: p["employee_number"])


# --- listing ---------------------------------------------------------------------------------

def list_staff(db, actor, *, department_code: str | None = None,
               today: date | None = None) -> list[dict]:
    """Accounts (of a department and those under it, if given) in the shape of
    ``staff --json``: login, employee_number, name, department_code, roles, status (today's,
    None for a local account without roster history), active. Admins only."""
    require_role(actor, "admin")
    where, params = "", []
    if department_code:
        department = db.execute("SELECT department_id FROM departments WHERE code = ?",
                                [department_code]).fetchone()
        if department is None:
            raise NotFound(f"department {department_code}")
        where = ("WHERE u.department_id IN (WITH RECURSIVE scope(department_id) AS (SELECT ?"
                 " UNION SELECT d.department_id FROM departments d JOIN scope s"
                 " ON d.parent_id = s.department_id) SELECT department_id FROM scope)")
        params = [department[0]]
    day = (today or dates.office_today()).isoformat()
    periods = _statuses_by_user(db)
    rows = db.query(
        "SELECT u.user_id, u.login, u.employee_number, u.display_name, u.source, u.active,"
        " d.code AS department_code,"
        " (SELECT group_concat(role) FROM user_roles r WHERE r.user_id = u.user_id) AS role_list"
        f" FROM users u JOIN departments d ON d.department_id = u.department_id {where}"
        " ORDER BY d.position, u.employee_number, u.login", params)
    return [{
        "login": row["login"], "employee_number": row["employee_number"],
        "name": row["display_name"], "department_code": row["department_code"],
        "roles": sorted(filter(None, (row["role_list"] or "").split(","))),
        "status": (status_on(periods[row["user_id"]], day) if row["user_id"] in periods
                   else "active" if row["source"] == "roster" else None),
        "active": bool(row["active"]),
    } for row in rows]


# --- the admin's pages -------------------------------------------------------------------------

PAGE_SIZE = 50
MAX_QUERY = 60
# A person's status on a day in SQL, as status_on() says it: the latest statement covering
# the day, else 在職 — or NULL for a local account the roster never mentioned. One indexed
# lookup per account (staff_status_periods_user), never a query per row from Python.
STATUS_SQL = (
    "coalesce((SELECT p.status FROM staff_status_periods p WHERE p.user_id = u.user_id"
    " AND p.starts_on <= :day AND (p.ends_on IS NULL OR p.ends_on >= :day)"
    " ORDER BY p.period_id DESC LIMIT 1),"
    " CASE WHEN u.source = 'roster' OR EXISTS (SELECT 1 FROM staff_status_periods q"
    " WHERE q.user_id = u.user_id) THEN 'active' END)"
)
SCOPE_SQL = ("WITH RECURSIVE scope(department_id) AS (SELECT :department_id UNION"
             " SELECT d.department_id FROM departments d JOIN scope s ON d.parent_id = s.department_id)")


def _katakana(text: str) -> str:
    return "".join(chr(ord(c) + 0x60) if "\u3041" <= c <= "\u3096" else c for c in text)


def _like(text: str) -> str:
    return "%" + re.sub(r"([\\%_])", r"\\\1", text) + "%"


def search_staff(db, actor, *, department_id=None, status: str = "", role: str = "", q: str = "",
                 page: int = 1, today: date | None = None) -> dict:
    """One page of the staff list: accounts filtered by 所属 (a 部 includes its 課), today's
    status, role, and words of the name, kana, 職員番号 or login id; ordered by 所属 then
    職員番号.

    Admins see everyone; a 所属長 who is not an admin sees their own 所属 (and those under
    it) whatever ``department_id`` says (``locked`` is then True); anyone else gets
    Forbidden. Unknown status and role values are ignored. Returns ``{"people", "total",
    "page", "pages", "locked"}``; each person has user_id, login, employee_number, name,
    name_kana, position, department_name, parent_name, roles, status (None for a local
    account without roster history) and active.
    """
    if not actor.has_role("admin"):
        require_role(actor, "manager")
        department_id = actor.department_id
    params: dict = {"day": (today or dates.office_today()).isoformat()}
    where = []
    if department_id:
        params["department_id"] = int(department_id)
        where.append("u.department_id IN (SELECT department_id FROM scope)")
    if role in ROLES:
        params["role"] = role
        where.append("EXISTS (SELECT 1 FROM user_roles r WHERE r.user_id = u.user_id AND r.role = :role)")
    words = unicodedata.normalize("NFKC", q or "").strip()[:MAX_QUERY].split()
    for n, word in enumerate(words):
        params[f"w{n}"], params[f"k{n}"] = _like(word), _like(_katakana(word))
        # Names are kept as written (山田　太郎): compare without their spaces.
        where.append(f"(replace(replace(u.display_name, ' ', ''), '\u3000', '') LIKE :w{n} ESCAPE '\\'"
                     f" OR replace(u.name_kana, ' ', '') LIKE :k{n} ESCAPE '\\'"
                     f" OR u.employee_number LIKE :w{n} ESCAPE '\\' OR u.login LIKE :w{n} ESCAPE '\\')")
    outer = ""
    if status in STATUSES:
        params["status"] = status
        outer = "WHERE b.status = :status"
    base = (f"{SCOPE_SQL if department_id else 'WITH'}{',' if department_id else ''}"
            f" base AS (SELECT u.user_id, u.login, u.employee_number, u.display_name, u.name_kana,"
            f" u.position, u.active, u.department_id, {STATUS_SQL} AS status FROM users u"
            f" {'WHERE ' + ' AND '.join(where) if where else ''})")
    total = db.execute(f"{base} SELECT count(*) FROM base b {outer}", params).fetchone()[0]
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(max(1, int(page or 1)), pages)
    rows = db.query(
        f"{base} SELECT b.*, d.name AS department_name, pd.name AS parent_name,"
        " (SELECT group_concat(role) FROM user_roles r WHERE r.user_id = b.user_id) AS role_list"
        " FROM base b JOIN departments d ON d.department_id = b.department_id"
        f" LEFT JOIN departments pd ON pd.department_id = d.parent_id {outer}"
        " ORDER BY d.position, d.department_id, b.employee_number, b.login"
        " LIMIT :limit OFFSET :offset", {**params, "limit": PAGE_SIZE, "offset": (page - 1) * PAGE_SIZE})
    people = [{
        "user_id": row["user_id"], "login": row["login"], "employee_number": row["employee_number"],
        "name": row["display_name"], "name_kana": row["name_kana"], "position": row["position"],
        "department_name": row["department_name"], "parent_name": row["parent_name"],
        "roles": [r for r in ROLES if r in (row["role_list"] or "").split(",")],
        "status": row["status"], "active": bool(row["active"]),
    } for row in rows]
    return {"people": people, "total": total, "page": page, "pages": pages,
            "locked": not actor.has_role("admin")}



def staff_person(db, actor, user_id: int, today: date | None = None) -> dict:
    """A person's page (admins only): the account (with its ``version`` for the status
    form), roles, today's status, department history (newest first) and status history
    (newest statement first). Raises NotFound for an unknown account."""
    require_role(actor, "admin")
    rows = db.execute_returning_dicts(
        "SELECT u.*, d.name AS department_name, pd.name AS parent_name FROM users u"
        " JOIN departments d ON d.department_id = u.department_id"
        " LEFT JOIN departments pd ON pd.department_id = d.parent_id WHERE u.user_id = ?",
        [user_id])
    if not rows:
        raise NotFound(f"user {user_id}")
    person = rows[0]
    roles = {row[0] for row in db.execute("SELECT role FROM user_roles WHERE user_id = ?", [user_id])}
    assignments = db.execute_returning_dicts(
        "SELECT a.starts_on, a.ends_on, d.name AS department_name, d.code AS department_code,"
        " pd.name AS parent_name FROM staff_assignments a"
        " JOIN departments d ON d.department_id = a.department_id"
        " LEFT JOIN departments pd ON pd.department_id = d.parent_id"
        " WHERE a.user_id = ? ORDER BY a.starts_on DESC, a.assignment_id DESC", [user_id])
    history = status_history(db, actor, user_id)
    day = (today or dates.office_today()).isoformat()
    status = (status_on(history, day) if history
              else "active" if person["source"] == "roster" else None)
    return {"account": {key: person[key] for key in (
                "user_id", "login", "display_name", "employee_number", "name_kana", "email",
                "position", "source", "active", "version", "department_name", "parent_name",
                "created_at", "updated_at")},
            "has_password": bool(person["password_hash"]),
            "roles": [role for role in ROLES if role in roles],
            "status": status, "assignments": assignments, "statuses": list(reversed(history))}
