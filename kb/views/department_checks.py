"""自己点検 for the 所属長: who in their 所属 has answered, exclusions, paper answer sheets
and keying them in. Reviewers may open any 所属's page too; the core decides who may act."""

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user

from kb import paper, participation, reminders, roles
from kb.db import get_db
from kb.exceptions import Invalid

bp = Blueprint("department_checks", __name__, url_prefix="/selfcheck/manage")


@bp.before_request
def _managers_only():
    roles.require_role(current_user, "manager", "reviewer")


@bp.app_context_processor
def _mail_counts():
    """``campaign_mail_counts(id)`` for the reviewers' campaign page (templates/campaigns)."""
    return {"campaign_mail_counts": lambda campaign_id: reminders.mail_counts(
        get_db(), current_user, campaign_id)}


@bp.route("")
def index():
    db = get_db()
    return render_template("department_checks/index.html",
                           campaigns=participation.managed_campaigns(db, current_user),
                           departments=participation.managed_departments(db, current_user))


def _render_department(campaign_id: int, department_id: int, *, errors=None, typed=None,
                       status=200):
    db = get_db()
    state = participation.department_status(db, current_user, campaign_id, department_id)
    rates = participation.item_rates(db, current_user, campaign_id, department_id) \
        if state["campaign"]["status"] != "draft" else []
    return render_template("department_checks/department.html", state=state, rates=rates,
                           errors=errors or {}, typed=typed or {},
                           min_group=participation.MIN_GROUP), status


@bp.route("/<int:campaign_id>/<int:department_id>")
def department(campaign_id: int, department_id: int):
    return _render_department(campaign_id, department_id)


@bp.route("/<int:campaign_id>/<int:department_id>/exclusions", methods=["POST"])
def exclude(campaign_id: int, department_id: int):
    user_id = request.form.get("user_id", type=int) or 0
    reason = request.form.get("reason", "")
    try:
        participation.exclude_person(get_db(), current_user, campaign_id, user_id, reason)
    except Invalid as error:
        messages = error.errors.get("reason", [])
        return _render_department(campaign_id, department_id, status=422,
                                  errors={user_id: messages, "exclusion": messages},
                                  typed={user_id: reason})
    flash("対象から除外しました。", "success")
    return redirect(url_for(".department", campaign_id=campaign_id, department_id=department_id))


@bp.route("/<int:campaign_id>/<int:department_id>/exclusions/<int:user_id>/delete",
          methods=["POST"])
def include(campaign_id: int, department_id: int, user_id: int):
    try:
        participation.include_person(get_db(), current_user, campaign_id, user_id)
    except Invalid as error:
        return _render_department(campaign_id, department_id, status=422,
                                  errors={"include": error.errors.get("reason", [])})
    flash("除外を取り消しました。対象者に戻しました。", "success")
    return redirect(url_for(".department", campaign_id=campaign_id, department_id=department_id))


@bp.route("/<int:campaign_id>/<int:department_id>/sheets")
def sheets(campaign_id: int, department_id: int):
    try:
        printed = paper.answer_sheets(get_db(), current_user, campaign_id, department_id)
    except Invalid as error:
        return _render_department(campaign_id, department_id, status=422,
                                  errors={"sheets": error.errors["sheets"]})
    return render_template("department_checks/sheets.html", printed=printed)


@bp.route("/<int:campaign_id>/<int:department_id>/paper/<int:user_id>", methods=["GET", "POST"])
def key_in(campaign_id: int, department_id: int, user_id: int):
    db = get_db()
    errors, typed, status = {}, {}, 200
    if request.method == "POST":
        typed = {key[1:]: value for key, value in request.form.items() if key.startswith("q")}
        try:
            paper.key_in_sheet(db, current_user, campaign_id, user_id,
                               request.form.get("attempt_id", type=int) or 0, typed)
        except Invalid as error:
            errors, status = error.errors, 422
        else:
            flash("用紙の回答を入力しました（紙で回答）。", "success")
            return redirect(url_for(".department", campaign_id=campaign_id,
                                    department_id=department_id))
    sheet = paper.sheet_for(db, current_user, campaign_id, user_id)
    return render_template("department_checks/key_in.html", sheet=sheet, errors=errors,
                           typed=typed, department_id=department_id), status
