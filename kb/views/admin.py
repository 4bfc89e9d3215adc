"""Administration: accounts (create, change department and roles, deactivate) and the audit log."""

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, SelectField, SelectMultipleField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.widgets import CheckboxInput, ListWidget

from kb import audit, roles, users
from kb.db import get_db
from kb.exceptions import Invalid

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
                          "roles": sorted(user.roles), "active": user.active})
    form.set_departments(users.list_departments(db))
    if form.validate_on_submit():
        try:
            user = users.update_user(
                db, current_user, user_id, display_name=form.display_name.data or "",
                department_id=form.department_id.data, roles=form.roles.data or [],
                active=form.active.data, password=form.password.data or None)
        except Invalid as error:
            form.show_errors(error)
        else:
            flash(f"利用者「{user.display_name}」を更新しました。", "success")
            return redirect(url_for("admin.users"))
    return render_template("admin/user_form.html", form=form, user=user)


@bp.route("/audit")
def audit_log():
    return render_template("admin/audit.html", entries=audit.list_entries(get_db(), current_user))
