"""The review workflow: draft → submitted → approved → published, and back to draft.

``may`` is the one statement of who may do what to a report (DESIGN §1 and §3); every
transition checks it here, in the core, and writes the audit log. Templates ask the same
function which buttons to show.
"""

from datetime import date

from kb import audit, reports, statutory
from kb.db import mark_changed, transaction, utcnow
from kb.exceptions import Conflict, Forbidden, Invalid, NotFound, PersonalDataFound

ACTIONS = ("edit", "submit", "approve", "return", "publish", "comment", "review_pii",
           "statutory")
COMMENT_LIMIT = 2000


def may(user, action: str, case: dict) -> bool:
    """Whether ``user`` may do ``action`` to the internal report ``case`` now."""
    if case["origin"] != "internal" or user is None or user.user_id is None:
        return False
    status = case["status"]
    own = case["reporter_id"] == user.user_id
    department_manager = user.has_role("manager") and case["department_id"] == user.department_id
    reviewer = user.has_role("reviewer")
    rules = {
        "edit": own and status == "draft",
        "submit": own and status == "draft",
        "approve": department_manager and status == "submitted",
        "return": (department_manager and status == "submitted")
                  or (reviewer and status in ("submitted", "approved")),
        "publish": reviewer and status == "approved",
        "comment": own or (department_manager and status != "draft")
                   or (reviewer and status != "draft"),
        "review_pii": reviewer and status in ("submitted", "approved"),
        "statutory": reviewer and case["kind"] == "incident" and status != "draft",
    }
    return rules[action]


def allowed_actions(user, case: dict) -> set[str]:
    return {action for action in ACTIONS if may(user, action, case)}


def _checked_case(db, actor, case_id: int, action: str, version=None) -> dict:
    case = reports._case_row(db, case_id)
    if not may(actor, action, case):
        raise Forbidden(f"{action} of case {case_id} refused for user {actor.user_id}")
    if version is not None and str(version) != str(case["version"]):
        raise Conflict(f"case {case_id} is at version {case['version']}")
    return case


def _comment_row(case_id: int, actor, body: str, action: str | None, now: str) -> dict:
    return {"case_id": case_id, "user_id": actor.user_id, "body": body, "action": action,
            "created_at": now}


def _transition(db, actor, case: dict, status: str, action: str, *, comment: str = "",
                stamp: str | None = None) -> None:
    now = utcnow()
    changes = {"status": status, "updated_at": now, "version": case["version"] + 1}
    if stamp:
        changes[stamp] = now
    with transaction(db):
        db["cases"].update(case["case_id"], changes)
        mark_changed(db, case["case_id"])
        if comment:
            db["comments"].insert(_comment_row(case["case_id"], actor, comment, action, now))
        anonymous = bool(case["anonymous"]) and case["reporter_id"] == actor.user_id
        audit.record(db, actor, f"report_{action}", case_id=case["case_id"],
                     anonymous=anonymous, detail={"from": case["status"], "to": status})


def submit_report(db, actor, case_id: int, *, version=None, pii_acknowledged=False) -> None:
    """Send the reporter's draft to their manager.

    Raises Invalid when a field the template needs is empty, and PersonalDataFound when
    text looks like personal data and the reporter has not said it is not.
    """
    case = _checked_case(db, actor, case_id, "submit", version)
    report = reports.report_from_case(db, case_id)
    _, _, _, errors = reports.clean_report(db, report, submitting=True)
    if errors:
        raise Invalid(errors)
    findings = reports.report_findings(report)
    if findings and not pii_acknowledged:
        raise PersonalDataFound(findings)
    _transition(db, actor, case, "submitted", "submit", stamp="submitted_at")


def approve_report(db, actor, case_id: int, *, comment: str = "") -> None:
    case = _checked_case(db, actor, case_id, "approve")
    _transition(db, actor, case, "approved", "approve", comment=_comment(comment, False),
                stamp="approved_at")


def return_report(db, actor, case_id: int, *, comment: str) -> None:
    """Send a report back to its reporter as a draft; the reason is required."""
    case = _checked_case(db, actor, case_id, "return")
    _transition(db, actor, case, "draft", "return", comment=_comment(comment, True))


def confirmed_findings(db, case_id: int) -> set[tuple[str, str]]:
    return {(row[0], row[1]) for row in db.execute(
        "SELECT field, text FROM pii_confirmations WHERE case_id = ?", [case_id])}


def open_findings(db, case_id: int) -> dict:
    """Personal-data findings of a stored case that are neither masked nor confirmed."""
    return reports.report_findings(reports.report_from_case(db, case_id),
                                   confirmed_findings(db, case_id))


def publish_report(db, actor, case_id: int, *, comment: str = "") -> None:
    """Publish an approved report; refused while a personal-data finding is open."""
    case = _checked_case(db, actor, case_id, "publish")
    findings = open_findings(db, case_id)
    if findings:
        raise PersonalDataFound(findings)
    _transition(db, actor, case, "published", "publish", comment=_comment(comment, False),
                stamp="published_at")


def mask_finding(db, actor, case_id: int, field: str, start: int, end: int) -> bool:
    """A reviewer masks one finding in a stored report; False if it is no longer there."""
    case = _checked_case(db, actor, case_id, "review_pii")
    report = reports.report_from_case(db, case_id)
    if not reports.mask_in_report(report, field, start, end):
        return False
    values, countermeasures, codes, _ = reports.clean_report(db, report, submitting=False)
    now = utcnow()
    with transaction(db):
        db["cases"].update(case_id, {**{k: values[k] for k in reports.TEXT_COLUMNS},
                                     "whys": values["whys"], "data_items": values["data_items"],
                                     "updated_at": now, "version": case["version"] + 1})
        reports.write_links(db, case_id, countermeasures, codes, now)
        mark_changed(db, case_id)
        audit.record(db, actor, "pii_mask", case_id=case_id, detail={"field": field})
    return True


def confirm_not_personal_data(db, actor, case_id: int, field: str, text: str) -> None:
    """A reviewer records that a finding is not personal data (e.g. an office's number)."""
    _checked_case(db, actor, case_id, "review_pii")
    report = reports.report_from_case(db, case_id)
    if not any(f.text == text for f in reports.report_findings(report).get(field, [])):
        raise Invalid({field: ["確認する対象が見つかりません。画面を読み込み直してください。"]})
    with transaction(db):
        db["pii_confirmations"].insert({"case_id": case_id, "field": field, "text": text,
                                        "confirmed_by": actor.user_id,
                                        "confirmed_at": utcnow()}, ignore=True)
        audit.record(db, actor, "pii_confirm", case_id=case_id,
                     detail={"field": field, "text": text})


def _comment(text: str, required: bool) -> str:
    text = reports.clean_text(text)
    if required and not text:
        raise Invalid({"comment": ["差し戻す理由を書いてください。報告者が直すところが分かるようにします。"]})
    if len(text) > COMMENT_LIMIT:
        raise Invalid({"comment": [f"コメントは{COMMENT_LIMIT:,}文字以内にしてください。"]})
    return text


def add_comment(db, actor, case_id: int, body: str) -> None:
    case = _checked_case(db, actor, case_id, "comment")
    body = _comment(body, True) if body.strip() else None
    if body is None:
        raise Invalid({"comment": ["コメントを入力してください。"]})
    with transaction(db):
        db["comments"].insert(_comment_row(case_id, actor, body, None, utcnow()))
        anonymous = bool(case["anonymous"]) and case["reporter_id"] == actor.user_id
        audit.record(db, actor, "comment_add", case_id=case_id, anonymous=anonymous)


def update_statutory_record(db, actor, case_id: int, *, prelim_reported_on: str,
                            final_reported_on: str, disclosure: str,
                            disclosure_reason: str) -> None:
    """A reviewer records when the 速報 and 確報 were made and the 公表 decision."""
    case = _checked_case(db, actor, case_id, "statutory")
    errors: dict = {}
    values = {
        "prelim_reported_on": reports._date(prelim_reported_on, errors, "prelim_reported_on"),
        "final_reported_on": reports._date(final_reported_on, errors, "final_reported_on"),
        "disclosure": disclosure or None, "disclosure_reason": disclosure_reason.strip(),
    }
    if disclosure and disclosure not in statutory.DISCLOSURE_LABELS:
        errors["disclosure"] = ["公表の方法は一覧から選んでください。"]
    if disclosure == "none" and not values["disclosure_reason"]:
        errors["disclosure_reason"] = ["非公表とする理由を入力してください。"]
    if len(values["disclosure_reason"]) > reports.TEXT_LIMITS["disclosure_reason"]:
        errors["disclosure_reason"] = ["500文字以内にしてください。"]
    if errors:
        raise Invalid(errors)
    with transaction(db):
        db["cases"].update(case_id, {**values, "updated_at": utcnow(),
                                     "version": case["version"] + 1})
        mark_changed(db, case_id)
        audit.record(db, actor, "statutory_update", case_id=case_id,
                     detail={k: v for k, v in values.items() if k != "disclosure_reason"})


def update_countermeasure_status(db, actor, countermeasure_id: int, status: str) -> None:
    """Managers of the case's or the owner department, and reviewers, track progress."""
    rows = db.execute_returning_dicts(
        "SELECT m.*, c.department_id AS case_department_id, c.status AS case_status,"
        " c.origin FROM countermeasures m JOIN cases c USING (case_id)"
        " WHERE m.countermeasure_id = ?", [countermeasure_id])
    if not rows:
        raise NotFound(f"countermeasure {countermeasure_id}")
    row = rows[0]
    manager = actor.has_role("manager") and actor.department_id in (
        row["case_department_id"], row["owner_department_id"])
    if row["origin"] != "internal" or row["case_status"] == "draft" \
            or not (manager or actor.has_role("reviewer")):
        raise Forbidden(f"countermeasure {countermeasure_id}")
    if status not in reports.COUNTERMEASURE_STATUSES:
        raise Invalid({"status": ["進み具合は一覧から選んでください。"]})
    with transaction(db):
        db["countermeasures"].update(countermeasure_id, {"status": status, "updated_at": utcnow()})
        audit.record(db, actor, "countermeasure_update", case_id=row["case_id"],
                     detail={"countermeasure_id": countermeasure_id, "status": status})


# --- lists -------------------------------------------------------------------------------

QUEUE_SORTS = {"oldest": "ASC", "newest": "DESC"}


def _report_rows(db, where: str, params: list, order: str) -> list[dict]:
    return db.execute_returning_dicts(
        "SELECT c.*, d.name AS department_label, u.display_name AS reporter_name,"
        " (SELECT count(*) FROM comments k WHERE k.case_id = c.case_id) AS comment_count"
        " FROM cases c LEFT JOIN departments d ON d.department_id = c.department_id"
        " LEFT JOIN users u ON u.user_id = c.reporter_id"
        f" WHERE c.origin = 'internal' AND {where} ORDER BY {order}", params)


def _for_viewer(rows: list[dict], viewer) -> list[dict]:
    for row in rows:
        if row["anonymous"] and row["reporter_id"] != viewer.user_id:
            row["reporter_name"] = None
            row["reporter_id"] = None
        row["assessment"] = statutory.assess(row)
    return rows


def my_reports(db, actor) -> list[dict]:
    """The actor's own reports, newest first, each with its comments and countermeasures."""
    rows = _for_viewer(_report_rows(db, "c.reporter_id = ?", [actor.user_id],
                                    "c.updated_at DESC, c.case_id DESC"), actor)
    for row in rows:
        row["countermeasures"] = db.execute_returning_dicts(
            "SELECT * FROM countermeasures WHERE case_id = ? ORDER BY position", [row["case_id"]])
        row["last_comment"] = next(iter(db.execute_returning_dicts(
            "SELECT * FROM comments WHERE case_id = ? ORDER BY comment_id DESC LIMIT 1",
            [row["case_id"]])), None)
    return rows


def queue(db, actor, *, status: str, sort: str = "oldest", kind: str | None = None,
          task: str | None = None) -> list[dict]:
    """Reports waiting for the actor: 承認待ち (submitted, managers of the department) or
    公開待ち (approved, reviewers). Forbidden for anyone else."""
    if status == "submitted" and actor.has_role("manager"):
        where, params = "c.status = 'submitted' AND c.department_id = ?", [actor.department_id]
        stamp = "c.submitted_at"
    elif status == "approved" and actor.has_role("reviewer"):
        where, params, stamp = "c.status = 'approved'", [], "c.approved_at"
    else:
        raise Forbidden(f"queue {status}")
    if kind in ("incident", "near_miss"):
        where += " AND c.kind = ?"
        params.append(kind)
    if task:
        where += " AND c.task = ?"
        params.append(task)
    order = f"{stamp} {QUEUE_SORTS.get(sort, 'ASC')}, c.case_id"
    return _for_viewer(_report_rows(db, where, params, order), actor)


def deadlines(db, actor, *, today: date | None = None) -> list[dict]:
    """Reportable incidents whose 速報 or 確報 is not yet recorded, soonest due first."""
    if not actor.has_role("reviewer"):
        raise Forbidden("deadlines")
    today = today or date.today()
    rows = _for_viewer(_report_rows(
        db, "c.kind = 'incident' AND c.status != 'draft'"
            " AND (c.prelim_reported_on IS NULL OR c.final_reported_on IS NULL)", [],
        "c.discovered_on, c.case_id"), actor)
    due = []
    for row in rows:
        assessment = row["assessment"]
        if assessment.reportable and assessment.next_due:
            row["overdue"] = assessment.overdue(today)
            row["days_left"] = (assessment.next_due - today).days
            due.append(row)
    return sorted(due, key=lambda row: row["assessment"].next_due)


def list_comments(db, viewer, case_id: int) -> list[dict]:
    """The case's comments, oldest first; an anonymous reporter's appear as 「報告者（匿名）」."""
    case = reports._case_row(db, case_id)
    rows = db.execute_returning_dicts(
        "SELECT k.*, u.display_name AS author_name, d.name AS author_department"
        " FROM comments k LEFT JOIN users u ON u.user_id = k.user_id"
        " LEFT JOIN departments d ON d.department_id = u.department_id"
        " WHERE k.case_id = ? ORDER BY k.comment_id", [case_id])
    for row in rows:
        row["by_reporter"] = row["user_id"] is not None and row["user_id"] == case["reporter_id"]
        if row["by_reporter"] and case["anonymous"] and viewer.user_id != row["user_id"]:
            row["author_name"] = "報告者（匿名）"
            row["author_department"] = None
        row.pop("user_id")
    return rows


def case_context(db, viewer, case_id: int) -> dict:
    """What the case page shows a viewer beyond the case: the actions open to them, the
    comment thread, open personal-data findings (reviewers) and the statutory clock
    (those who handle the report). Call after ``cases.read_case`` allowed the read."""
    case = reports._case_row(db, case_id)
    if case["origin"] != "internal":
        return {"actions": set(), "comments": [], "findings": {}, "assessment": None}
    actions = allowed_actions(viewer, case)
    handler = case["reporter_id"] == viewer.user_id or viewer.has_role("reviewer") or (
        viewer.has_role("manager") and case["department_id"] == viewer.department_id)
    return {
        "actions": actions,
        "comments": list_comments(db, viewer, case_id),
        "findings": open_findings(db, case_id) if "review_pii" in actions else {},
        "assessment": statutory.assess(case) if handler else None,
    }
