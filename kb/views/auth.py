"""Signing in and out."""

from flask import (Blueprint, current_app, flash, redirect, render_template, request, session,
                   url_for)
from flask_login import current_user, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from kb import directory, users
from kb.db import get_db
from kb.security import is_safe_next, limit_failed_logins

bp = Blueprint("auth", __name__)

FAILED_LOGIN = "ログインIDまたはパスワードが正しくありません。"
DIRECTORY_UNAVAILABLE = ("認証サーバー（ディレクトリ）に接続できないため、ログインできませんでした。"
                         "しばらくしてからもう一度お試しください。続くときは管理者（情報政策課）に"
                         "お知らせください。")
NO_ACCOUNT = ("パスワードは確認できましたが、このナレッジベースで使えるアカウントがありません"
              "（職員名簿にないか、無効になっています）。管理者（情報政策課）にお問い合わせください。")


class LoginForm(FlaskForm):
    login = StringField("ログインID", validators=[
        DataRequired("ログインIDを入力してください。"), Length(max=40, message="ログインIDが長すぎます。")])
    password = PasswordField("パスワード", validators=[
        DataRequired("パスワードを入力してください。"),
        Length(max=users.MAX_PASSWORD_LENGTH, message="パスワードが長すぎます。")])


@bp.route("/login", methods=["GET", "POST"])
@limit_failed_logins
def login():
    next_url = request.values.get("next")
    if current_user.is_authenticated:
        return redirect(next_url if is_safe_next(next_url) else url_for("home.index"))
    form = LoginForm()
    error = None
    if form.validate_on_submit():
        db = get_db()
        user, error = None, FAILED_LOGIN
        try:
            user = directory.sign_in(db, current_app.config, form.login.data, form.password.data)
        except directory.DirectoryUnavailable:
            error = DIRECTORY_UNAVAILABLE
        except directory.NoAccount:
            error = NO_ACCOUNT
        users.record_login(db, user, succeeded=user is not None, login=form.login.data)
        if user is not None:
            session.clear()  # a fresh session at sign-in: nothing carries over from before
            session.permanent = True
            login_user(user)
            return redirect(next_url if is_safe_next(next_url) else url_for("home.index"))
    return render_template("auth/login.html", form=form, error=error,
                           next_url=next_url if is_safe_next(next_url) else None)


@bp.route("/logout", methods=["POST"])
def logout():
    users.sign_out(get_db(), current_user)  # every session of the user ends, copies included
    logout_user()
    session.clear()
    flash("ログアウトしました。", "info")
    return redirect(url_for("auth.login"))
