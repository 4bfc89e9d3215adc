"""Reviewers' handling of cases from other municipalities: import with a preview, edit, withdraw."""

import secrets
from pathlib import Path

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user

from kb import imports, roles
from kb.db import get_db
from kb.exceptions import Conflict, Invalid
from kb.views import uploads
from kb.views.cases import render_case

bp = Blueprint("external", __name__, url_prefix="/external")

LARGE_IMPORT = 200  # cases; more take the search index minutes rather than seconds


@bp.before_request
def _reviewers_only():
    roles.require_role(current_user, "reviewer")


def _upload_path(token: str) -> Path:
    return uploads.held(token, "{}.upload")


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


STALE_PREVIEW_MESSAGE = ("確認の画面を開いた後に、別の人が他自治体の事例を変更したため、取り込みませんでした"
                         "（何も変更していません）。いまの内容で確認し直した結果を下に表示しています。"
                         "内容を確かめてから、もう一度「取り込む」を押してください。")


@bp.route("/import/commit", methods=["POST"])
def commit_import():
    path = _upload_path(request.form.get("token", ""))
    filename = request.form.get("filename", "upload")
    if not path.exists():
        flash("プレビューの有効期限が切れました。もう一度ファイルを選んでください。", "error")
        return redirect(url_for("external.import_file"))
    data = path.read_bytes()
    try:
        # A form without the preview's fingerprint is as stale as an old one.
        result = imports.import_cases(get_db(), data, filename, current_user,
                                      preview=request.form.get("preview", ""))
    except Invalid as error:  # the file was checked at preview; the database may have moved
        return render_template("external/import.html", result=None, errors=error.errors,
                               filename=filename), 422
    except Conflict:
        # Someone changed an external case since the preview: show what the file would
        # change now, to be confirmed again.
        try:
            result = imports.import_cases(get_db(), data, filename, current_user, dry_run=True)
        except Invalid as error:
            return render_template("external/import.html", result=None, errors=error.errors,
                                   filename=filename), 422
        token = secrets.token_hex(16)
        _upload_path(token).write_bytes(data)
        return render_template("external/import.html", errors=None, result=result, token=token,
                               filename=filename, notice=STALE_PREVIEW_MESSAGE), 409
    finally:
        path.unlink(missing_ok=True)
    if result.changed:
        # Whoosh takes ~10 ms a case: a big file reaches search well after this page.
        reflected = ("検索にもすぐ反映されています。" if len(result.changed_case_ids) <= LARGE_IMPORT
                     else "検索への反映には、件数に応じて数分かかることがあります。")
        flash(f"取り込みました：新規 {result.new}件、更新 {result.updated}件、変更なし {result.unchanged}件。"
              + reflected, "success")
    else:
        flash("変更はありませんでした（同じ内容が取り込み済みです）。", "info")
    return render_template("external/done.html", result=result)


CONFLICT_MESSAGE = ("この事例は、あなたが画面を開いた後に別の人が保存しています。あなたの入力はこの画面に"
                    "残してあります（まだ保存していません）。入力を控えてから画面を開き直し、最新の内容に"
                    "あらためて反映してください。")
STATUS_CONFLICT_MESSAGE = ("この事例は、あなたが画面を開いた後に別の人が変更しています。まだ何も変えていません。"
                           "この画面のいまの内容と状態を確かめてから、もう一度ボタンを押してください。")


@bp.route("/<int:case_id>/edit", methods=["GET", "POST"])
def edit(case_id: int):
    db = get_db()
    record = imports.external_record(db, case_id)
    if request.method == "GET":
        return render_template("external/edit.html", record=record, case_id=case_id, errors={},
                               warnings={}, findings={}, notice=None)
    typed = {key: request.form.get(key, "") for key in imports.FIELD_NAMES if key != "id"}
    version = request.form.get("version", "")
    try:
        lost = imports.update_external_case(db, current_user, case_id, typed, version)
    except Invalid as error:
        return render_template("external/edit.html", record=dict(record, **typed, version=version),
                               case_id=case_id, errors=error.errors, warnings={},
                               findings={}, notice=None), 422
    except Conflict:
        return render_template("external/edit.html", record=dict(record, **typed, version=version),
                               case_id=case_id, errors={}, warnings={}, findings={},
                               notice=CONFLICT_MESSAGE), 409
    flash("事例を更新しました。", "success")
    for measure in lost:
        flash(f"再発防止策「{measure['text']}」がなくなったため、チェックリスト項目"
              f" {'、'.join(measure['item_codes'])} との関連付けが外れました。必要なら付け直してください。",
              "error")
    return redirect(url_for("cases.show", case_id=case_id))


@bp.route("/<int:case_id>/withdraw", methods=["POST"])
def withdraw(case_id: int):
    return _set_status(case_id, withdrawn=True)


@bp.route("/<int:case_id>/restore", methods=["POST"])
def restore(case_id: int):
    return _set_status(case_id, withdrawn=False)


def _set_status(case_id: int, *, withdrawn: bool):
    reason = request.form.get("reason", "")
    try:
        imports.set_external_status(get_db(), current_user, case_id, withdrawn=withdrawn,
                                    version=request.form.get("version", ""), reason=reason)
    except Invalid as error:
        flash(error.errors["reason"][0], "error")
    except Conflict:
        return render_case(case_id, status=409, conflict={
            "form": "external-status", "message": STATUS_CONFLICT_MESSAGE,
            "typed": {"reason": reason}})
    else:
        flash("事例を取り下げました。検索や一覧には表示されません。" if withdrawn
              else "事例を公開に戻しました。", "success")
    return redirect(url_for("cases.show", case_id=case_id))
