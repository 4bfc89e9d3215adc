"""Sign-in slips (/slips: print for a 課; /slip: use a code and choose a password) and
changing one's own password (/account/password)."""

import functools
from urllib.parse import urlsplit

from flask import (Blueprint, current_app, flash, g, redirect, render_template, request, session,
                   url_for)
from flask_login import current_user, login_user
from flask_wtf import FlaskForm
from wtforms import HiddenField, PasswordField, RadioField, StringField
from wtforms.fields.choices import SelectChoice

from kb import mail, slips, users
from kb.db import get_db
from kb.exceptions import Invalid
from kb.security import limit_failed_logins

bp = Blueprint("slips", __name__)

CODE_FIELDS = ("login", "code")


class CodeForm(FlaskForm):
    login = StringField("ログインID")
    code = StringField("用紙のコード")


class NewPasswordForm(FlaskForm):
    # The login and code the first step checked, checked again with the password.
    login = HiddenField()
    code = HiddenField()
    password = PasswordField("新しいパスワード")
    password_confirm = PasswordField("新しいパスワード（確認）")


class ChangePasswordForm(FlaskForm):
    current_password = PasswordField("現在のパスワード")
    password = PasswordField("新しいパスワード")
    password_confirm = PasswordField("新しいパスワード（確認）")


class PrintForm(FlaskForm):
    department_id = HiddenField()
    scope = RadioField("印刷する人", choices=[SelectChoice(key, text) for key, text in slips.SCOPES.items()],
                       default="no_password", validate_choice=False)


def _show_errors(form, error: Invalid) -> None:
    for field, messages in error.errors.items():
        form[field].errors = list(messages)


def _code_refused(response) -> bool:
    # Only a refused login + code counts against the limit: a password that breaks a rule
    # is not a guess at a code.
    return bool(g.get("slip_code_refused"))


@bp.route("/slip", methods=["GET", "POST"])
@functools.partial(limit_failed_logins, failed=_code_refused)
def redeem():
    """Step 1: login + code; step 2 (the form carries both back): the new password twice."""
    db = get_db()
    if request.method == "GET" or "password" not in request.form:
        form = CodeForm(data={"login": request.args.get("login", "")[:40]})
        if not form.validate_on_submit():
            return render_template("slips/redeem.html", form=form)
        try:
            person = slips.check_code(db, form.login.data or "", form.code.data or "")
        except Invalid as error:
            g.slip_code_refused = True
            _show_errors(form, error)
            return render_template("slips/redeem.html", form=form), 422
        return render_template("slips/choose_password.html", person=person, rules=users.PASSWORD_RULES,
                               form=NewPasswordForm(login=form.login.data, code=form.code.data))
    form = NewPasswordForm()
    if not form.validate_on_submit():
        return render_template("slips/redeem.html", form=CodeForm()), 400
    try:
        person = slips.use_code(db, form.login.data or "", form.code.data or "",
                                password=form.password.data or "",
                                confirm=form.password_confirm.data or "")
    except Invalid as error:
        if set(error.errors) & set(CODE_FIELDS):
            g.slip_code_refused = True
            code_form = CodeForm(data={"login": form.login.data})
            _show_errors(code_form, error)
            return render_template("slips/redeem.html", form=code_form), 422
        _show_errors(form, error)
        return render_template("slips/choose_password.html", form=form, rules=users.PASSWORD_RULES,
                               person=None), 422
    session.clear()  # a fresh session: nothing of whoever used this browser before carries over
    session.permanent = True
    login_user(person)
    users.record_login(db, person, succeeded=True)
    flash("パスワードを設定しました。次回からはログインIDとこのパスワードでログインします。", "success")
    return redirect(url_for("home.index"))


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def _public_url_unreachable() -> bool:
    # Slips carry KB_PUBLIC_URL (and its QR code). Left at its loopback default while the
    # printing browser reaches the app by another name, every slip would send staff to
    # their own PC: say so before a sheet is printed.
    public = (urlsplit(current_app.config["PUBLIC_URL"]).hostname or "").lower()
    return public in LOOPBACK_HOSTS and (request.host.rsplit(":", 1)[0].strip("[]").lower()
                                         not in LOOPBACK_HOSTS)


@bp.route("/slips")
def choose():
    db = get_db()
    departments = slips.printable_departments(db, current_user)
    chosen = request.args.get("department") or (
        "" if current_user.has_role("admin") else str(current_user.department_id))
    listing = slips.department_people(db, current_user, chosen) if chosen else None
    form = PrintForm(department_id=chosen)
    return render_template("slips/choose.html", departments=departments, listing=listing,
                           chosen=chosen, form=form,
                           valid_days=current_app.config["SLIP_VALID_DAYS"],
                           public_url=current_app.config["PUBLIC_URL"],
                           public_url_unreachable=_public_url_unreachable())


@bp.route("/slips/print", methods=["POST"])
def sheet():
    form = PrintForm()
    if not form.validate_on_submit():
        return redirect(url_for("slips.choose"))
    printed = slips.print_slips(
        get_db(), current_user, form.department_id.data, scope=form.scope.data,
        # The address staff reach the app by, not the one the printing browser used.
        base_url=mail.link(current_app.config["PUBLIC_URL"],
                           url_for("slips.redeem")[len(request.script_root):]),
        valid_days=current_app.config["SLIP_VALID_DAYS"])
    return render_template("slips/sheet.html", printed=printed, scope=form.scope.data)


@bp.route("/account/password", methods=["GET", "POST"])
def change_password():
    form = ChangePasswordForm()
    if form.validate_on_submit():
        try:
            person = users.change_own_password(
                get_db(), current_user, current_password=form.current_password.data or "",
                password=form.password.data or "", confirm=form.password_confirm.data or "")
        except Invalid as error:
            _show_errors(form, error)
            return render_template("slips/change_password.html", form=form,
                                   rules=users.PASSWORD_RULES), 422
        login_user(person)  # this browser stays signed in; every other session has ended
        flash("パスワードを変更しました。ほかの端末やブラウザーでのログインは終了しました。", "success")
        return redirect(url_for("home.index"))
    return render_template("slips/change_password.html", form=form, rules=users.PASSWORD_RULES)
