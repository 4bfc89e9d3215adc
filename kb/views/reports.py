"""Filing and handling reports: the forms, 自分の報告, the queues and the workflow buttons."""

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from kb import cases, checklist, reports, statutory, users, workflow
from kb.db import get_db
from kb.views.cases import render_case
from kb.exceptions import Conflict, Invalid, PersonalDataFound

bp = Blueprint("reports", __name__, url_prefix="/reports")

CONFLICT_MESSAGE = ("この下書きは、別の画面か別の人が先に保存しています。あなたの入力はこの画面に"
                    "残してあります。最新の内容を確認するには、入力を控えてから画面を開き直してください。")
CASE_CONFLICT_MESSAGE = ("この画面を開いた後に、別の画面か別の人がこの事例を更新したため、保存しませんでした。"
                         "あなたの入力はこの欄に残してあります。入力を控えてから画面を開き直し、"
                         "最新の内容を確認してからもう一度保存してください。")
PII_CONFLICT_MESSAGE = ("この画面を開いた後に、別の画面か別の人がこの事例を更新したため、伏せる・確認する"
                        "操作は行っていません。下の一覧は最新の内容です。もう一度確認してから操作してください。")
STEP_CONFLICT_MESSAGE = ("この画面を開いた後に、別の画面か別の人がこの報告を更新したため、承認・公開・"
                         "差し戻しは行っていません。入力したコメントはこの欄に残してあります。"
                         "画面を開き直し、最新の内容と状態を確認してからもう一度操作してください。")
COUNTERMEASURE_CONFLICT_MESSAGE = (
    "この画面を開いた後に、別の画面か別の人がこの対策を更新したため、保存しませんでした。"
    "あなたが選んだ進み具合はこの欄に残してあります。画面を開き直し、最新の内容を確認してから"
    "もう一度更新してください。")


def _render_form(report, *, case_id=None, errors=None, findings=None, status=200, notice=None):
    db = get_db()
    if findings is None:
        findings = reports.report_findings(report)
    return render_template(
        "reports/form.html", report=report, kind=report["kind"], case_id=case_id,
        errors=errors or {}, warnings=reports.warnings_for(report), findings=findings,
        notice=notice, sections=checklist.current_sections(db),
        departments=users.list_departments(db), label_of=reports.label_of,
        assessment=statutory.assess(_assessable(report)),
    ), status


def _assessable(report: dict) -> dict:
    count = report.get("affected_count") or ""
    return dict(report, affected_count=int(count) if count.isdigit() else None)


@bp.route("/new")
def new():
    return render_template("reports/new.html")


@bp.route("/new/<any(near_miss, incident):kind>", methods=["GET", "POST"])
def create(kind):
    if request.method == "GET":
        return _render_form(reports.empty_report(kind))[0]
    return _handle_form(reports.report_from_form(request.form, kind), case_id=None)


@bp.route("/<int:case_id>/edit", methods=["GET", "POST"])
def edit(case_id):
    db = get_db()
    if request.method == "GET":
        return _render_form(reports.report_for_editing(db, current_user, case_id),
                            case_id=case_id)[0]
    reports.editable_case(db, current_user, case_id)
    kind = reports.report_from_case(db, case_id)["kind"]
    return _handle_form(reports.report_from_form(request.form, kind), case_id=case_id)


def _handle_form(report, *, case_id):
    """Save what was typed, then do what the pressed button asked."""
    db = get_db()
    action = request.form.get("action", "save")
    notice = None
    if action.startswith("mask|"):
        _, field, start, end = (action.split("|") + ["", "", ""])[:4]
        if not reports.mask_in_report(report, field, _int(start), _int(end)):
            notice = "隠そうとした箇所が見つかりませんでした。内容を確認してください。"
    elif action == "add_row" and len(report["countermeasures"]) < reports.MAX_COUNTERMEASURES:
        report["countermeasures"].append({"countermeasure_id": None, "text": "", "type": "",
                                          "owner_department_id": "", "due_on": "",
                                          "status": "planned", "item_codes": []})
    elif action.startswith("remove_row|"):
        index = _int(action.split("|")[1])
        if 0 <= index < len(report["countermeasures"]):
            del report["countermeasures"][index]
    try:
        case_id = reports.save_report(db, current_user, _without_blank_rows(report),
                                      case_id=case_id)
    except Invalid as error:
        return _render_form(report, case_id=case_id, errors=error.errors, status=422)
    except Conflict:
        return _render_form(report, case_id=case_id, status=409, notice=CONFLICT_MESSAGE)
    saved = reports.report_from_case(db, case_id)
    if action == "add_row":
        saved["countermeasures"].append(report["countermeasures"][-1])
    if action == "submit":
        try:
            workflow.submit_report(db, current_user, case_id,
                                   pii_acknowledged=request.form.get("pii_acknowledged") == "1")
        except Invalid as error:
            return _render_form(saved, case_id=case_id, errors=error.errors, status=422,
                                notice="下書きは保存しました。提出するには、次の欄を直してください。")
        except PersonalDataFound as found:
            return _render_form(saved, case_id=case_id, findings=found.findings, status=422,
                                notice="下書きは保存しました。個人情報らしき記載があります。"
                                       "各欄の「＊＊＊で隠す」で伏せるか、個人情報でないことを確認して提出してください。")
        flash("報告を提出しました。所属長の承認を待っています。", "success")
        return redirect(url_for("reports.mine"))
    if action == "save":
        flash("下書きを保存しました。", "success")
        return redirect(url_for("reports.edit", case_id=case_id))
    return _render_form(saved, case_id=case_id, notice=notice)[0]


def _without_blank_rows(report):
    # An untouched blank row (added with 行を追加) is not a countermeasure yet.
    return dict(report, countermeasures=[row for row in report["countermeasures"]
                                         if row["text"] or row["countermeasure_id"]
                                         or row["due_on"] or row["item_codes"] or row["type"]])


def _int(value, default=-1):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


@bp.route("/mine")
def mine():
    return render_template("reports/mine.html", rows=workflow.my_reports(get_db(), current_user))


@bp.route("/queue/<any(submitted, approved):status>")
def queue(status):
    sort = request.args.get("sort", "oldest")
    kind = request.args.get("kind") or None
    task = request.args.get("task") or None
    db = get_db()
    rows = workflow.queue(db, current_user, status=status, sort=sort, kind=kind, task=task)
    held = workflow.held_comments(db, current_user) if status == "approved" else []
    return render_template("reports/queue.html", rows=rows, status=status, sort=sort,
                           kind=kind, task=task, tasks=cases.TASKS, held=held)


@bp.route("/deadlines")
def deadlines():
    return render_template("reports/deadlines.html",
                           rows=workflow.deadlines(get_db(), current_user))


# --- workflow buttons on the case page --------------------------------------------

def _back(case_id):
    return redirect(url_for("cases.show", case_id=case_id) + "#workflow")


def _invalid(case_id, error: Invalid):
    for messages in error.errors.values():
        for message in messages:
            flash(message, "error")
    return _back(case_id)


def _stale_step(case_id):
    # A form without a version is as stale as an old one: never an unchecked step.
    return render_case(case_id, status=409, conflict={
        "form": "workflow", "message": STEP_CONFLICT_MESSAGE,
        "typed": {"comment": request.form.get("comment", ""),
                  "version": request.form.get("version", "")}})


@bp.route("/<int:case_id>/approve", methods=["POST"])
def approve(case_id):
    try:
        workflow.approve_report(get_db(), current_user, case_id,
                                comment=request.form.get("comment", ""),
                                version=request.form.get("version", ""))
    except Invalid as error:
        return _invalid(case_id, error)
    except Conflict:
        return _stale_step(case_id)
    flash("承認しました。情報管理担当の公開待ちになります。", "success")
    return _back(case_id)


@bp.route("/<int:case_id>/return", methods=["POST"])
def return_(case_id):
    try:
        workflow.return_report(get_db(), current_user, case_id,
                               comment=request.form.get("comment", ""),
                               version=request.form.get("version", ""))
    except Invalid as error:
        return _invalid(case_id, error)
    except Conflict:
        return _stale_step(case_id)
    flash("差し戻しました。報告者の下書きに戻ります。", "success")
    return _back(case_id)


@bp.route("/<int:case_id>/publish", methods=["POST"])
def publish(case_id):
    try:
        workflow.publish_report(get_db(), current_user, case_id,
                                comment=request.form.get("comment", ""),
                                version=request.form.get("version", ""))
    except Conflict:
        return _stale_step(case_id)
    except PersonalDataFound:
        flash("個人情報らしき記載が残っているため公開できません。下の一覧で伏せるか、"
              "個人情報でないことを確認してください。", "error")
        return _back(case_id)
    except Invalid as error:
        return _invalid(case_id, error)
    flash("公開しました。全職員が検索・閲覧できます。", "success")
    return _back(case_id)


@bp.route("/<int:case_id>/comments", methods=["POST"])
def comment(case_id):
    try:
        findings = workflow.add_comment(get_db(), current_user, case_id,
                                        request.form.get("comment", ""))
    except Invalid as error:
        return _invalid(case_id, error)
    if findings:
        flash("コメントを書き込みました。個人情報らしき記載（"
              + "、".join(sorted({finding.label for finding in findings}))
              + "）があるため、情報管理担当が伏せるか確認するまで、この報告の関係者にだけ表示されます。",
              "info")
    else:
        flash("コメントを書き込みました。", "success")
    return redirect(url_for("cases.show", case_id=case_id) + "#comments")


@bp.route("/<int:case_id>/pii", methods=["POST"])
def review_pii(case_id):
    db = get_db()
    field = request.form.get("field", "")
    # A form without a version is as stale as an old one: never an unchecked overwrite.
    version = request.form.get("version", "")
    try:
        if request.form.get("action") == "confirm":
            workflow.confirm_not_personal_data(db, current_user, case_id, field,
                                               request.form.get("text", ""), version=version)
            flash("個人情報ではないことを確認済みにしました。", "success")
        elif workflow.mask_finding(db, current_user, case_id, field,
                                   _int(request.form.get("start")), _int(request.form.get("end")),
                                   version=version):
            flash("＊＊＊で伏せました。", "success")
        else:
            flash("伏せる箇所が見つかりませんでした。画面を読み込み直してください。", "error")
    except Invalid as error:
        return _invalid(case_id, error)
    except Conflict:
        return render_case(case_id, status=409, conflict={
            "form": "pii", "message": PII_CONFLICT_MESSAGE, "typed": {}})
    return _back(case_id)


STATUTORY_INVALID_MESSAGE = "保存できませんでした（何も変更していません）。赤字の項目を直してください。"


def _statutory_typed(form) -> dict:
    return {key: form.get(key, "") for key in (
        "prelim_reported_on", "final_reported_on", "disclosure", "disclosure_reason",
        "disclosed_on", "disclosure_url", "version")}


@bp.route("/<int:case_id>/statutory", methods=["POST"])
def statutory_record(case_id):
    form = request.form
    try:
        workflow.update_statutory_record(
            get_db(), current_user, case_id,
            prelim_reported_on=form.get("prelim_reported_on", ""),
            final_reported_on=form.get("final_reported_on", ""),
            disclosure=form.get("disclosure", ""),
            disclosure_reason=form.get("disclosure_reason", ""), version=form.get("version", ""),
            disclosed_on=form.get("disclosed_on", ""),
            disclosure_url=form.get("disclosure_url", ""))
    except Invalid as error:
        # The form again with each message beside its field and what was typed kept.
        return render_case(case_id, status=422, conflict={
            "form": "statutory", "message": STATUTORY_INVALID_MESSAGE,
            "errors": error.errors, "typed": _statutory_typed(form)})
    except Conflict:
        return render_case(case_id, status=409, conflict={
            "form": "statutory", "message": CASE_CONFLICT_MESSAGE,
            "typed": _statutory_typed(form)})
    flash("報告・公表の記録を保存しました。", "success")
    return _back(case_id)


@bp.route("/countermeasures/<int:countermeasure_id>", methods=["POST"])
def countermeasure_status(countermeasure_id):
    db = get_db()
    case_id = _int(request.form.get("case_id"))
    if case_id < 0:
        abort(400)
    try:
        workflow.update_countermeasure_status(db, current_user, countermeasure_id,
                                              request.form.get("status", ""),
                                              version=request.form.get("version", ""))
    except Invalid as error:
        for messages in error.errors.values():
            flash(messages[0], "error")
    except Conflict:
        return render_case(case_id, status=409, conflict={
            "form": f"countermeasure-{countermeasure_id}",
            "message": COUNTERMEASURE_CONFLICT_MESSAGE,
            "typed": {"status": request.form.get("status", ""),
                      "version": request.form.get("version", "")}})
    else:
        flash("対策の進み具合を更新しました。", "success")
    return redirect(url_for("cases.show", case_id=case_id) + "#countermeasures")
