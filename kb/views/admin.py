"""Administration: accounts (create, change department and roles, deactivate) and the audit log."""

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import (BooleanField, HiddenField, PasswordField, SelectField, SelectMultipleField,
                     StringField)
from wtforms.fields.choices import SelectChoice
from wtforms.widgets import CheckboxInput, ListWidget

from kb import audit, roles, users
from kb.db import get_db
from kb.exceptions import Conflict, Invalid
from kb.rendering import excel_csv

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
def _admins_only():
    # The core functions check again; this keeps every page of the area, forms included, closed.
    roles.require_role(current_user, "admin")


def _department_id(value) -> int:
    # The core reports an unknown department next to the field; 0 is never a department.
    return int(value) if str(value).isdigit() else 0


class UserForm(FlaskForm):
    login = StringField("ログインID")
    display_name = StringField("氏名")
    department_id = SelectField("所属", coerce=_department_id, validate_choice=False)
    roles = SelectMultipleField(
        "役割", choices=[SelectChoice(role, roles.ROLE_LABELS[role]) for role in roles.ROLES],
        validate_choice=False,
        widget=ListWidget(prefix_label=False), option_widget=CheckboxInput())
    password = PasswordField("パスワード")
    active = BooleanField("有効（ログインできる）")
    # The account's users.version when the form was opened (edit only).
    version = HiddenField()

    def set_departments(self, departments):
        self.department_id.choices = [SelectChoice(0, "選んでください")] + [
            SelectChoice(d["department_id"], d["name"], optgroup=d["parent_name"] or d["name"])
            for d in departments]

    def show_errors(self, error: Invalid):
        for field, messages in error.errors.items():
            self[field].errors = list(messages)


@bp.route("/users")
def users_index():
    return render_template("admin/users.html", users=users.list_users(get_db(), current_user))


# The navigation names the area by its first page.
bp.add_url_rule("/", "users", users_index)


@bp.route("/users/new", methods=["GET", "POST"])
def new_user():
    db = get_db()
    form = UserForm()
    form.set_departments(users.list_departments(db))
    if form.validate_on_submit():
        try:
            user = users.create_user(
                db, current_user, login=form.login.data or "",
                display_name=form.display_name.data or "",
                department_id=form.department_id.data, roles=form.roles.data or [],
                password=form.password.data or "")
        except Invalid as error:
            form.show_errors(error)
        else:
            flash(f"利用者「{user.display_name}」を作成しました。", "success")
            return redirect(url_for("admin.users"))
    return render_template("admin/user_form.html", form=form, user=None)


@bp.route("/users/<int:user_id>", methods=["GET", "POST"])
def edit_user(user_id: int):
    db = get_db()
    user = users.get_user(db, user_id)
    form = UserForm(data={"display_name": user.display_name, "department_id": user.department_id,
                          "roles": sorted(user.roles), "active": user.active,
                          "version": users.account_version(db, user_id)})
    form.set_departments(users.list_departments(db))
    if form.validate_on_submit():
        try:
            # A form without a version is as stale as an old one: never an unchecked overwrite.
            # Read from the request itself: WTForms fills a field the request lacks from the
            # form's data, which holds the current version.
            user = users.update_user(
                db, current_user, user_id, display_name=form.display_name.data or "",
                department_id=form.department_id.data, roles=form.roles.data or [],
                active=form.active.data, password=form.password.data or None,
                version=request.form.get("version", ""))
        except Invalid as error:
            form.show_errors(error)
        except Conflict:
            # The form keeps what was typed (a password is never sent back to the page).
            return render_template("admin/user_form.html", form=form, user=user,
                                   conflict=CONFLICT_MESSAGE), 409
        else:
            flash(f"利用者「{user.display_name}」を更新しました。", "success")
            return redirect(url_for("admin.users"))
    return render_template("admin/user_form.html", form=form, user=user)


CONFLICT_MESSAGE = ("この画面を開いた後に、別の管理者か別の画面がこの利用者を更新したため、保存しませんでした。"
                    "入力した内容はこの画面に残してあります（パスワードは安全のため再入力が必要です）。"
                    "入力を控えてから画面を開き直し、最新の内容を確認してからもう一度保存してください。")


AUDIT_FILTERS = ("action", "login", "case_id", "start", "end")


def _audit_filters() -> dict:
    filters = {key: (request.args.get(key) or "").strip() for key in AUDIT_FILTERS}
    if filters["case_id"] and not filters["case_id"].isdigit():
        filters["case_id"] = ""
    return filters


@bp.route("/audit")
def audit_log():
    db = get_db()
    filters = _audit_filters()
    try:
        entries = audit.list_entries(db, current_user, **filters)
    except Invalid as error:
        # The days as typed stay in their fields, each message beside its field.
        return render_template("admin/audit.html", filters=filters, actions=audit.actions(db),
                               entries=[], errors=error.errors), 422
    return render_template("admin/audit.html", filters=filters, actions=audit.actions(db),
                           entries=entries, errors={})


@bp.route("/audit.csv")
def audit_csv():
    try:
        entries = audit.list_entries(get_db(), current_user, limit=None, **_audit_filters())
    except Invalid:
        abort(400)
    body = excel_csv(["日時 (UTC)", "利用者", "操作", "事例", "対象", "詳細"],
                     [[e["at"], e["actor"], e["action"], e["case_id"] or "", e["target"] or "",
                       e["detail"]] for e in entries])
    return Response(body, mimetype="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="audit-log.csv"'})
