"""Reviewers' handling of cases from other municipalities: import with a preview, edit, withdraw."""

import re
import secrets
import time
from pathlib import Path

from flask import (Blueprint, abort, current_app, flash, redirect, render_template, request,
                   url_for)
from flask_login import current_user

from kb import imports, roles
from kb.db import get_db
from kb.exceptions import Invalid

bp = Blueprint("external", __name__, url_prefix="/external")

UPLOAD_DIR = "uploads"
UPLOAD_LIFETIME = 24 * 3600


@bp.before_request
def _reviewers_only():
    roles.require_role(current_user, "reviewer")


def _uploads() -> Path:
    folder = Path(current_app.config["DATA_DIR"]) / UPLOAD_DIR
    folder.mkdir(exist_ok=True)
    for old in folder.glob("*.upload"):  # previews nobody committed
        if time.time() - old.stat().st_mtime > UPLOAD_LIFETIME:
            old.unlink(missing_ok=True)
    return folder


def _upload_path(token: str) -> Path:
    if not re.fullmatch(r"[0-9a-f]{32}", token or ""):
        abort(400)
    return _uploads() / f"{token}.upload"


@bp.route("/import", methods=["GET", "POST"])
def import_file():
    """Upload a file and preview what it would change; nothing is written yet."""
    if request.method == "GET":
        return render_template("external/import.html", errors=None, result=None)
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return render_template("external/import.html", result=None,
                               errors={"ファイル": ["取り込むファイルを選んでください。"]}), 422
    data = upload.read(imports.MAX_BYTES + 1)
    try:
        result = imports.import_cases(get_db(), data, upload.filename, current_user, dry_run=True)
    except Invalid as error:
        return render_template("external/import.html", result=None, errors=error.errors,
                               filename=upload.filename), 422
    token = secrets.token_hex(16)
    _upload_path(token).write_bytes(data)
    return render_template("external/import.html", errors=None, result=result, token=token,
                           filename=upload.filename)


@bp.route("/import/commit", methods=["POST"])
def commit_import():
    path = _upload_path(request.form.get("token", ""))
    filename = request.form.get("filename", "upload")
    if not path.exists():
        flash("プレビューの有効期限が切れました。もう一度ファイルを選んでください。", "error")
        return redirect(url_for("external.import_file"))
    try:
        result = imports.import_cases(get_db(), path.read_bytes(), filename, current_user)
    except Invalid as error:  # the file was checked at preview; the database may have moved
        return render_template("external/import.html", result=None, errors=error.errors,
                               filename=filename), 422
    finally:
        path.unlink(missing_ok=True)
    if result.changed:
        flash(f"取り込みました：新規 {result.new}件、更新 {result.updated}件、変更なし {result.unchanged}件。"
              "検索にもすぐ反映されています。", "success")
    else:
        flash("変更はありませんでした（同じ内容が取り込み済みです）。", "info")
    return render_template("external/done.html", result=result)


@bp.route("/<int:case_id>/edit", methods=["GET", "POST"])
def edit(case_id: int):
    db = get_db()
    record = imports.external_record(db, case_id)
    if request.method == "GET":
        return render_template("external/edit.html", record=record, case_id=case_id, errors={},
                               warnings={}, findings={})
    typed = {key: request.form.get(key, "") for key in imports.FIELD_NAMES if key != "id"}
    try:
        imports.update_external_case(db, current_user, case_id, typed)
    except Invalid as error:
        return render_template("external/edit.html", record=dict(record, **typed),
                               case_id=case_id, errors=error.errors, warnings={},
                               findings={}), 422
    flash("事例を更新しました。", "success")
    return redirect(url_for("cases.show", case_id=case_id))


@bp.route("/<int:case_id>/withdraw", methods=["POST"])
def withdraw(case_id: int):
    try:
        imports.set_external_status(get_db(), current_user, case_id, withdrawn=True,
                                    reason=request.form.get("reason", ""))
    except Invalid as error:
        flash(error.errors["reason"][0], "error")
    else:
        flash("事例を取り下げました。検索や一覧には表示されません。", "success")
    return redirect(url_for("cases.show", case_id=case_id))


@bp.route("/<int:case_id>/restore", methods=["POST"])
def restore(case_id: int):
    imports.set_external_status(get_db(), current_user, case_id, withdrawn=False)
    flash("事例を公開に戻しました。", "success")
    return redirect(url_for("cases.show", case_id=case_id))


