"""The audit log: an append-only record of who did what to which record, and when.

The table refuses UPDATE and DELETE (triggers in the initial migration), so the log
cannot be edited through the app or by a slip in later code.
"""

import json

from kb import dates
from kb.db import utcnow
from kb.exceptions import Invalid
from kb.roles import require_role


ANONYMOUS_ACTOR = "（匿名の報告者）"


def record(db, actor, action: str, *, case_id=None, target=None, detail=None,
           anonymous=False) -> None:
    """Append one entry. ``actor`` is a User, or None for the command line.

    With ``anonymous`` (a reporter acting on their anonymous near-miss) the entry names
    no one, so the log cannot undo the anonymity the reporter was promised.
    """
    db["audit_log"].insert({
        "at": utcnow(),
        "user_id": None if anonymous else getattr(actor, "user_id", None),
        "actor": ANONYMOUS_ACTOR if anonymous else (getattr(actor, "login", None) or "cli"),
        "action": action,
        "case_id": case_id,
        "target": target,
        "detail": json.dumps(detail or {}, ensure_ascii=False, sort_keys=True),
    })


def list_entries(db, actor, *, action: str = "", login: str = "", case_id=None,
                 start: str = "", end: str = "", limit: int | None = 200) -> list[dict]:
    """The newest entries first, filtered by action, actor login, case and day. Admins only.

    ``start`` and ``end`` are days as typed (2026/12/01, 令和8年12月1日 …: ``kb.dates``);
    one that is not a day raises Invalid with the message by field. Entries by the reporter
    of a case that is anonymous now are shown without a name, whatever they recorded when
    the report was not yet anonymous.
    """
    require_role(actor, "admin")
    errors, days = {}, {}
    for name, value in (("start", start), ("end", end)):
        try:
            days[name] = dates.parse_day(value)
        except dates.DateError as error:
            errors[name] = [str(error)]
    if errors:
        raise Invalid(errors)
    start, end = days["start"], days["end"]
    clauses, params = [], []
    if action:
        clauses.append("a.action = ?")
        params.append(action)
    if login:
        clauses.append("a.actor = ? AND NOT coalesce(c.anonymous = 1 AND a.user_id = c.reporter_id, 0)")
        params.append(login)
    if case_id not in (None, ""):
        clauses.append("a.case_id = ?")
        params.append(int(case_id))
    if start:
        clauses.append("a.at >= ?")
        params.append(start)
    if end:
        clauses.append("substr(a.at, 1, 10) <= ?")
        params.append(end)
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    sql = ("SELECT a.*, coalesce(c.anonymous = 1 AND a.user_id = c.reporter_id, 0) AS hide_actor"
           " FROM audit_log a LEFT JOIN cases c ON c.case_id = a.case_id"
           f"{where} ORDER BY a.audit_id DESC")
    if limit:
        sql += f" LIMIT {int(limit)}"
    rows = db.query(sql, params)
    return [dict(row, actor=ANONYMOUS_ACTOR, user_id=None) if row.pop("hide_actor") else row
            for row in rows]


def actions(db) -> list[str]:
    return [row[0] for row in db.execute("SELECT DISTINCT action FROM audit_log ORDER BY action")]
