"""The review workflow: draft → submitted → approved → published, and back to draft.

``may`` is the one statement of who may do what to a report (DESIGN §1 and §3); every
transition checks it here, in the core, and writes the audit log. Templates ask the same
function which buttons to show.
"""

from datetime import date

from kb import audit, cases, dates, pii, reports, statutory
from kb.db import mark_changed, transaction, utcnow
from kb.exceptions import Conflict, Forbidden, Invalid, NotFound, PersonalDataFound

ACTIONS = ("edit", "submit", "approve", "return", "publish", "comment", "review_pii",
           "review_comments", "statutory")
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
        # Comments keep coming after publication: each is checked before all staff see it.
        "review_comments": reviewer and status in ("submitted", "approved", "published"),
        "statutory": reviewer and case["kind"] == "incident" and status != "draft",
    }
    return rules[action]


def allowed_actions(user, case: dict) -> set[str]:
    return {action for action in ACTIONS if may(user, action, case)}


def _checked_case(db, actor, case_id: int, action: str, version=None) -> dict:
    """The case row, once ``actor`` may do ``action`` to it: NotFound when they may not
    read it (before any other check, so a refusal does not reveal the report), Forbidden
    when they read it but may not act, Conflict when ``version`` is stale."""
    cases.require_readable(db, actor, case_id)
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
    stamps = f", {stamp} = :now" if stamp else ""
    with transaction(db):
        # Compare and set: the step applies to the status and version that were checked,
        # so two steps racing on one report (an approve and a return) cannot both land.
        moved = db.execute(
            f"UPDATE cases SET status = :status, updated_at = :now, version = version + 1"
            f"{stamps} WHERE case_id = :case_id AND status = :was AND version = :version",
            {"status": status, "now": now, "case_id": case["case_id"], "was": case["status"],
             "version": case["version"]}).rowcount
        if not moved:
            raise Conflict(f"case {case['case_id']} changed before {action}")
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


def approve_report(db, actor, case_id: int, *, comment: str = "", version=None) -> None:
    """A manager approves a submitted report. ``version`` is the one the manager's page
    showed (None skips that check): Conflict, writing nothing, once the report changed."""
    case = _checked_case(db, actor, case_id, "approve", version)
    _transition(db, actor, case, "approved", "approve", comment=_comment(comment, False),
                stamp="approved_at")


def return_report(db, actor, case_id: int, *, comment: str, version=None) -> None:
    """Send a report back to its reporter as a draft; the reason is required."""
    case = _checked_case(db, actor, case_id, "return", version)
    _transition(db, actor, case, "draft", "return", comment=_comment(comment, True))


def confirmed_findings(db, case_id: int) -> set[tuple[str, str]]:
    return {(row[0], row[1]) for row in db.execute(
        "SELECT field, text FROM pii_confirmations WHERE case_id = ?", [case_id])}


def open_findings(db, case_id: int) -> dict:
    """Personal-data findings of a stored case that are neither masked nor confirmed: its
    report fields, then its comments (fields ``comment-<comment_id>``)."""
    confirmed = confirmed_findings(db, case_id)
    return {**reports.report_findings(reports.report_from_case(db, case_id), confirmed),
            **comment_findings(db, case_id, confirmed)}


# --- personal data in comments ------------------------------------------------------------
# The comment thread is shown with the published case, so each comment goes through the
# same check as the report: a finding is masked (the body is rewritten) or confirmed, keyed
# in pii_confirmations by the field name "comment-<comment_id>".

COMMENT_FIELD = "comment-"


def comment_field(comment_id: int) -> str:
    return f"{COMMENT_FIELD}{comment_id}"


def _comment_texts(db, case_id: int) -> list[tuple[int, str]]:
    return [(row[0], row[1]) for row in db.execute(
        "SELECT comment_id, body FROM comments WHERE case_id = ? ORDER BY comment_id",
        [case_id])]


def comment_findings(db, case_id: int, confirmed=None) -> dict[str, list]:
    """Open findings of the case's comments by field ``comment-<comment_id>``."""
    confirmed = confirmed_findings(db, case_id) if confirmed is None else confirmed
    findings = {}
    for comment_id, body in _comment_texts(db, case_id):
        field = comment_field(comment_id)
        found = [f for f in pii.scan(body) if (field, f.text) not in confirmed]
        if found:
            findings[field] = found
    return findings


def _comment_body(db, case_id: int, field: str) -> tuple[int, str] | None:
    """(comment_id, body) of the case's comment a field names; None if there is none."""
    number = field[len(COMMENT_FIELD):]
    if not number.isdigit():
        return None
    row = db.execute("SELECT comment_id, body FROM comments WHERE comment_id = ? AND case_id = ?",
                     [int(number), case_id]).fetchone()
    return (row[0], row[1]) if row else None


def _mask_comment(db, actor, case_id: int, field: str, start: int, end: int, version) -> bool:
    with transaction(db):
        case = _checked_case(db, actor, case_id, "review_comments", version)
        comment = _comment_body(db, case_id, field)
        match = comment and next((f for f in pii.scan(comment[1])
                                  if f.start == start and f.end == end), None)
        if not match:
            return False
        db["comments"].update(comment[0], {"body": pii.mask(comment[1], start, end, match.text)})
        # The page showed the comment as it was: other open pages must reload before acting.
        db["cases"].update(case_id, {"version": case["version"] + 1})
        audit.record(db, actor, "pii_mask", case_id=case_id, detail={"field": field})
    return True


def _record_confirmation(db, actor, case_id: int, field: str, text: str) -> None:
    """A reviewer's word that ``text`` in ``field`` is not personal data (audited)."""
    db["pii_confirmations"].insert({"case_id": case_id, "field": field, "text": text,
                                    "confirmed_by": actor.user_id, "confirmed_at": utcnow()},
                                   ignore=True)
    audit.record(db, actor, "pii_confirm", case_id=case_id, detail={"field": field, "text": text})


def _confirm_comment(db, actor, case_id: int, field: str, text: str, version) -> None:
    with transaction(db):
        _checked_case(db, actor, case_id, "review_comments", version)
        comment = _comment_body(db, case_id, field)
        if not comment or not any(f.text == text for f in pii.scan(comment[1])):
            raise Invalid({field: ["確認する対象が見つかりません。画面を読み込み直してください。"]})
        _record_confirmation(db, actor, case_id, field, text)


def publish_report(db, actor, case_id: int, *, comment: str = "", version=None) -> None:
    """Publish an approved report; refused while a personal-data finding is open."""
    case = _checked_case(db, actor, case_id, "publish", version)
    findings = open_findings(db, case_id)
    if findings:
        raise PersonalDataFound(findings)
    _transition(db, actor, case, "published", "publish", comment=_comment(comment, False),
                stamp="published_at")


def mask_finding(db, actor, case_id: int, field: str, start: int, end: int, *,
                 version=None) -> bool:
    """A reviewer masks one finding in a stored report; False if it is no longer there.

    ``version`` is the case version the reviewer's page showed (None skips the check):
    Conflict, writing nothing, once the case changed since — the offsets were of that text.
    A comment's finding (field ``comment-<id>``) rewrites the comment, on a published
    case too.
    """
    if field.startswith(COMMENT_FIELD):
        return _mask_comment(db, actor, case_id, field, start, end, version)
    now = utcnow()
    with transaction(db):
        # Read inside the write transaction: the version checked is the one overwritten.
        case = _checked_case(db, actor, case_id, "review_pii", version)
        report = reports.report_from_case(db, case_id)
        if not reports.mask_in_report(report, field, start, end):
            return False
        values, countermeasures, codes, _ = reports.clean_report(db, report, submitting=False)
        db["cases"].update(case_id, {**{k: values[k] for k in reports.TEXT_COLUMNS},
                                     "whys": values["whys"], "data_items": values["data_items"],
                                     "updated_at": now, "version": case["version"] + 1})
        reports.write_links(db, case_id, countermeasures, codes, now)
        mark_changed(db, case_id)
        audit.record(db, actor, "pii_mask", case_id=case_id, detail={"field": field})
    return True


def confirm_not_personal_data(db, actor, case_id: int, field: str, text: str, *,
                              version=None) -> None:
    """A reviewer records that a finding is not personal data (e.g. an office's number).

    Conflict when the case changed since ``version`` (None skips the check): the reviewer
    judged the text as it was then. A comment's finding (field ``comment-<id>``) may be
    confirmed on a published case too.
    """
    if field.startswith(COMMENT_FIELD):
        return _confirm_comment(db, actor, case_id, field, text, version)
    with transaction(db):
        _checked_case(db, actor, case_id, "review_pii", version)
        report = reports.report_from_case(db, case_id)
        if not any(f.text == text for f in reports.report_findings(report).get(field, [])):
            raise Invalid({field: ["確認する対象が見つかりません。画面を読み込み直してください。"]})
        _record_confirmation(db, actor, case_id, field, text)


def _comment(text: str, required: bool) -> str:
    text = reports.clean_text(text)
    if required and not text:
        raise Invalid({"comment": ["差し戻す理由を書いてください。報告者が直すところが分かるようにします。"]})
    if len(text) > COMMENT_LIMIT:
        raise Invalid({"comment": [f"コメントは{COMMENT_LIMIT:,}文字以内にしてください。"]})
    return text


def add_comment(db, actor, case_id: int, body: str) -> list:
    """Add a comment; returns its personal-data findings. A comment with findings is shown
    only to those who handle the case until a reviewer masks or confirms them (on a
    published case, everyone else does not see it), and it holds up publication."""
    case = _checked_case(db, actor, case_id, "comment")
    body = _comment(body, True) if body.strip() else None
    if body is None:
        raise Invalid({"comment": ["コメントを入力してください。"]})
    with transaction(db):
        db["comments"].insert(_comment_row(case_id, actor, body, None, utcnow()))
        anonymous = bool(case["anonymous"]) and case["reporter_id"] == actor.user_id
        audit.record(db, actor, "comment_add", case_id=case_id, anonymous=anonymous)
    return pii.scan(body)


def update_statutory_record(db, actor, case_id: int, *, prelim_reported_on: str,
                            final_reported_on: str, disclosure: str,
                            disclosure_reason: str, version=None,
                            disclosure_url: str | None = None,
                            disclosed_on: str | None = None) -> None:
    """A reviewer records when the 速報 and 確報 were made and the 公表 decision: how, why
    not, and for a 公表 the day it was made and the public page's address (what
    ``kb.sharing`` exports as 公表日 and 出典). ``disclosure_url`` and ``disclosed_on``
    None leave the stored values as they are.

    Raises Invalid (messages by field) for malformed input, and Conflict when the case
    changed since ``version``, the one the reviewer's page showed (None skips the check):
    a second reviewer's older page must not wipe the first one's dates. Nothing is
    written in either case.
    """
    _checked_case(db, actor, case_id, "statutory")
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
    if disclosed_on is not None:
        values["disclosed_on"] = reports._date(disclosed_on.strip(), errors, "disclosed_on")
    if disclosure_url is not None:
        values["disclosure_url"] = statutory.check_disclosure_url(disclosure_url, errors)
    if disclosure == "none" and (values.get("disclosure_url") or values.get("disclosed_on")):
        errors.setdefault("disclosure", []).append(
            "非公表の事例には公表した日・公表のURLを記録できません。公表の方法を選び直すか、日付とURLを空にしてください。")
    if errors:
        raise Invalid(errors)
    with transaction(db):
        case = _checked_case(db, actor, case_id, "statutory", version)
        db["cases"].update(case_id, {**values, "updated_at": utcnow(),
                                     "version": case["version"] + 1})
        mark_changed(db, case_id)
        audit.record(db, actor, "statutory_update", case_id=case_id,
                     detail={k: v for k, v in values.items() if k != "disclosure_reason"})


def update_countermeasure_status(db, actor, countermeasure_id: int, status: str, *,
                                 version=None) -> None:
    """Managers of the case's or the owner department, and reviewers, track progress.

    Conflict, writing nothing, when the countermeasure changed since ``version`` (its
    ``countermeasures.version`` as the actor's page showed it; None skips the check).
    """
    with transaction(db):
        _update_countermeasure_status(db, actor, countermeasure_id, status, version)


def _update_countermeasure_status(db, actor, countermeasure_id, status, version) -> None:
    rows = db.execute_returning_dicts(
        "SELECT m.*, c.department_id AS case_department_id, c.status AS case_status,"
        " c.origin FROM countermeasures m JOIN cases c USING (case_id)"
        " WHERE m.countermeasure_id = ?", [countermeasure_id])
    if not rows:
        raise NotFound(f"countermeasure {countermeasure_id}")
    row = rows[0]
    # A case the actor may not read is missing to them (an owner department's manager
    # reads another department's report once it is published).
    cases.require_readable(db, actor, row["case_id"])
    manager = actor.has_role("manager") and actor.department_id in (
        row["case_department_id"], row["owner_department_id"])
    if row["origin"] != "internal" or row["case_status"] == "draft" \
            or not (manager or actor.has_role("reviewer")):
        raise Forbidden(f"countermeasure {countermeasure_id}")
    if status not in reports.COUNTERMEASURE_STATUSES:
        raise Invalid({"status": ["進み具合は一覧から選んでください。"]})
    if version is not None and str(version) != str(row["version"]):
        raise Conflict(f"countermeasure {countermeasure_id} is at version {row['version']}")
    db["countermeasures"].update(countermeasure_id, {"status": status, "updated_at": utcnow(),
                                                     "version": row["version"] + 1})
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


def held_comments(db, actor) -> list[dict]:
    """Comments on published cases that the office does not see yet because the personal-data
    check found something in them: [{case_id, title, comment_id, created_at, kinds}], oldest
    first. Reviewers only (they mask or confirm each on the case page)."""
    if not actor.has_role("reviewer"):
        raise Forbidden("held comments")
    rows = db.execute(
        "SELECT m.case_id, c.title, m.comment_id, m.created_at, m.body FROM comments m"
        " JOIN cases c USING (case_id) WHERE c.status = 'published'"
        " ORDER BY m.created_at, m.comment_id").fetchall()
    held, confirmed = [], {}
    for case_id, title, comment_id, created_at, body in rows:
        if case_id not in confirmed:
            confirmed[case_id] = confirmed_findings(db, case_id)
        field = comment_field(comment_id)
        found = [f for f in pii.scan(body) if (field, f.text) not in confirmed[case_id]]
        if found:
            held.append({"case_id": case_id, "title": title, "comment_id": comment_id,
                         "created_at": created_at,
                         "kinds": sorted({pii.KIND_LABELS[f.kind] for f in found})})
    return held


def deadlines(db, actor, *, today: date | None = None) -> list[dict]:
    """Reportable incidents whose 速報 or 確報 is not yet recorded, soonest due first."""
    if not actor.has_role("reviewer"):
        raise Forbidden("deadlines")
    today = today or dates.office_today()
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
    """The case's comments, oldest first; an anonymous reporter's appear as 「報告者（匿名）」,
    and once the case is published every reporter's as 「報告者」 to everyone (a published
    case never names its reporter).

    A comment with an open personal-data finding is left out for everyone but those who
    handle the case and its author; for them it is flagged ``pii_pending``."""
    case = reports._case_row(db, case_id)
    pending = comment_findings(db, case_id)
    handler = _handles(viewer, case)
    rows = db.execute_returning_dicts(
        "SELECT k.*, u.display_name AS author_name, d.name AS author_department"
        " FROM comments k LEFT JOIN users u ON u.user_id = k.user_id"
        " LEFT JOIN departments d ON d.department_id = u.department_id"
        " WHERE k.case_id = ? ORDER BY k.comment_id", [case_id])
    shown = []
    for row in rows:
        row["pii_pending"] = comment_field(row["comment_id"]) in pending
        if row["pii_pending"] and not (handler or row["user_id"] == viewer.user_id):
            continue
        shown.append(row)
        row["by_reporter"] = row["user_id"] is not None and row["user_id"] == case["reporter_id"]
        if row["by_reporter"] and case["anonymous"] and viewer.user_id != row["user_id"]:
            row["author_name"] = "報告者（匿名）"
            row["author_department"] = None
        elif row["by_reporter"] and case["status"] == "published":
            row["author_name"] = "報告者"
            row["author_department"] = None
        row.pop("user_id")
    return shown


def _handles(viewer, case: dict) -> bool:
    """The reporter, the managers of the report's department and the reviewers."""
    return case["reporter_id"] == viewer.user_id or viewer.has_role("reviewer") or (
        viewer.has_role("manager") and case["department_id"] == viewer.department_id)


def case_context(db, viewer, case_id: int) -> dict:
    """What the case page shows a viewer beyond the case: the actions open to them, the
    comment thread, open personal-data findings (reviewers) and the statutory clock
    (those who handle the report). Call after ``cases.read_case`` allowed the read."""
    case = reports._case_row(db, case_id)
    if case["origin"] != "internal":
        return {"actions": set(), "comments": [], "findings": {}, "assessment": None}
    actions = allowed_actions(viewer, case)
    handler = _handles(viewer, case)
    if "review_pii" in actions:
        findings = open_findings(db, case_id)
    elif "review_comments" in actions:
        findings = comment_findings(db, case_id)
    else:
        findings = {}
    return {
        "actions": actions,
        "comments": list_comments(db, viewer, case_id),
        "findings": findings,
        "assessment": statutory.assess(case) if handler else None,
    }
