"""集計: where the risk is — counts by month, type, task and department, the checklist
items most implicated, why rules failed, and the countermeasures still open.

Internal reports count once submitted (drafts are nobody's business yet); cases of other
municipalities once published. Every chart, table and CSV is built from the cases the
reader may read (``cases.readable_clause`` without drafts): managers see their own
department's reports, reviewers every report, admins (who do not handle reports) the
published ones.
"""

from datetime import date

from kb import dates
from kb.cases import CASE_DATE, INCIDENT_TYPE_LABELS, RULE_STATUS_LABELS, TASK_LABELS, readable_clause
from kb.exceptions import Invalid
from kb.roles import require_role

ORIGINS = ("both", "internal", "external")


def parse_filters(actor, *, start: str = "", end: str = "", department_id=None,
                  origin: str = "both") -> dict:
    """Checked filters; Invalid with a message by field. Managers are held to their department."""
    require_role(actor, "manager", "reviewer", "admin")
    errors: dict[str, list[str]] = {}
    origin = origin or "both"
    days = {}
    for name, value in (("start", start), ("end", end)):
        try:
            if day := dates.parse_day(value):
                days[name] = day
        except dates.DateError as error:
            errors[name] = [str(error)]
    if days.get("start") and days.get("end") and days["end"] < days["start"]:
        errors["end"] = ["終わりの日が始まりの日より前になっています。"]
    if origin not in ORIGINS:
        errors["origin"] = ["出所は一覧から選んでください。"]
    if errors:
        raise Invalid(errors)
    everything = actor.has_role("reviewer", "admin")
    department = actor.department_id if not everything else (
        int(department_id) if str(department_id or "").isdigit() else None)
    if not everything:
        origin = "internal"  # a manager's view is their department's own reports
    return {"start": days.get("start"), "end": days.get("end"), "department_id": department,
            "origin": origin, "locked": not everything}


def _scope(actor, filters: dict) -> tuple[str, list]:
    readable, params = readable_clause(actor, drafts=False)
    clauses = ["((c.origin = 'internal' AND c.status IN ('submitted', 'approved', 'published'))"
               " OR (c.origin = 'external' AND c.status = 'published'))", readable]
    if filters["origin"] != "both":
        clauses.append("c.origin = ?")
        params.append(filters["origin"])
    if filters["department_id"]:
        clauses.append("c.department_id = ?")
        params.append(filters["department_id"])
    if filters["start"]:
        clauses.append(f"{CASE_DATE} >= ?")
        params.append(filters["start"])
    if filters["end"]:
        clauses.append(f"substr({CASE_DATE}, 1, 10) <= ?")
        params.append(filters["end"])
    return " AND ".join(clauses), params


def collect(db, actor, filters: dict, today: date | None = None) -> dict[str, list[dict]]:
    """Every chart's rows for the filters (see ``parse_filters``), counting only cases
    ``actor`` may read; Forbidden for those without a dashboard."""
    require_role(actor, "manager", "reviewer", "admin")
    where, params = _scope(actor, filters)
    today = (today or dates.office_today()).isoformat()

    def rows(sql, extra=()):
        return db.execute_returning_dicts(sql, list(params) + list(extra))

    months = rows(
        f"SELECT substr({CASE_DATE}, 1, 7) AS month,"
        " sum(c.kind = 'incident') AS incidents, sum(c.kind = 'near_miss') AS near_misses"
        f" FROM cases c WHERE {where} AND {CASE_DATE} IS NOT NULL AND length({CASE_DATE}) >= 7"
        " GROUP BY month ORDER BY month")
    types = rows(f"SELECT c.incident_type AS code, count(*) AS count FROM cases c WHERE {where}"
                 " AND c.incident_type IS NOT NULL GROUP BY code ORDER BY count DESC, code")
    tasks = rows(f"SELECT c.task AS code, count(*) AS count FROM cases c WHERE {where}"
                 " AND c.task IS NOT NULL GROUP BY code ORDER BY count DESC, code")
    departments = rows(
        "SELECT d.name AS department, sum(c.kind = 'incident') AS incidents,"
        " sum(c.kind = 'near_miss') AS near_misses FROM cases c"
        f" JOIN departments d ON d.department_id = c.department_id WHERE {where}"
        " AND c.origin = 'internal' GROUP BY d.department_id ORDER BY incidents DESC, d.position")
    for row in departments:
        row["per_incident"] = round(row["near_misses"] / row["incidents"], 1) if row["incidents"] else None
        # Near-misses should far outnumber incidents; fewer means they go unreported.
        row["under_reporting"] = row["incidents"] > 0 and row["near_misses"] <= row["incidents"]
    items = rows(
        "SELECT t.code, i.text, count(DISTINCT t.case_id) AS count FROM ("
        " SELECT l.item_code AS code, m.case_id FROM countermeasure_checklist_items l"
        " JOIN countermeasures m USING (countermeasure_id)"
        " UNION SELECT item_code, case_id FROM case_checklist_items) t"
        " JOIN cases c ON c.case_id = t.case_id"
        " LEFT JOIN checklist_items i ON i.code = t.code AND i.version_id ="
        " (SELECT version_id FROM checklist_versions WHERE is_current = 1)"
        f" WHERE {where} GROUP BY t.code ORDER BY count DESC, t.code LIMIT 15")
    rules = rows(f"SELECT c.rule_status AS code, count(*) AS count FROM cases c WHERE {where}"
                 " AND c.origin = 'internal' AND c.rule_status IS NOT NULL"
                 " GROUP BY code ORDER BY count DESC")
    backlog = db.execute_returning_dicts(
        "SELECT m.countermeasure_id, m.text, m.status, m.due_on, c.case_id, c.title,"
        " o.name AS owner_department, (m.due_on IS NOT NULL AND m.due_on < ?) AS overdue"
        " FROM countermeasures m JOIN cases c ON c.case_id = m.case_id"
        " LEFT JOIN departments o ON o.department_id = m.owner_department_id"
        f" WHERE {where} AND c.origin = 'internal' AND m.status != 'done'"
        " ORDER BY overdue DESC, m.due_on IS NULL, m.due_on, m.countermeasure_id",
        [today] + list(params))
    for row in types:
        row["label"] = INCIDENT_TYPE_LABELS.get(row["code"], row["code"])
    for row in tasks:
        row["label"] = TASK_LABELS.get(row["code"], row["code"])
    for row in rules:
        row["label"] = RULE_STATUS_LABELS.get(row["code"], row["code"])
    return {"months": months, "types": types, "tasks": tasks, "departments": departments,
            "items": items, "rules": rules, "backlog": backlog}


# Each chart's CSV: (Japanese column headings, the row keys they show).
CSV_COLUMNS = {
    "months": (("月", "事故", "ヒヤリ・ハット"), ("month", "incidents", "near_misses")),
    "types": (("種別", "件数"), ("label", "count")),
    "tasks": (("作業", "件数"), ("label", "count")),
    "departments": (("所属", "事故", "ヒヤリ・ハット", "事故1件あたりのヒヤリ・ハット", "報告不足の疑い"),
                    ("department", "incidents", "near_misses", "per_incident", "under_reporting")),
    "items": (("項目", "内容", "事例数"), ("code", "text", "count")),
    "rules": (("ルールの状況", "件数"), ("label", "count")),
    "backlog": (("対策", "状況", "期限", "期限超過", "担当課", "事例"),
                ("text", "status", "due_on", "overdue", "owner_department", "title")),
}
