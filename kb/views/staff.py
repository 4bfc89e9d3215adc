"""The admin's roster pages: upload 人事's roster with a preview, the staff list, a person's
page with their history and a manual status change."""

import secrets
from pathlib import Path

from flask import (Blueprint, abort, current_app, flash, redirect, render_template, request,
                   session, url_for)
from flask_login import current_user

from kb import dates, roles, roster, staff, users
from kb.db import get_db
from kb.exceptions import Conflict, Invalid
from kb.views import uploads

bp = Blueprint("staff", __name__, url_prefix="/admin/staff")

# Previews an admin may still commit (the newest ones, per session).
KEPT_PREVIEWS = 5
SHOWN_ROWS = 500  # rows of each list in a preview; the counts cover everything


@bp.before_request
def _admins_only():
    # The list is also open to 所属長 (their own 所属, read-only: the core narrows it); every
    # other page, forms included, is the admins'. The core functions check again.
    if request.endpoint != "staff.index":
        roles.require_role(current_user, "admin")


@bp.context_processor
def _vocabularies():
    return {"STATUSES": staff.STATUSES, "STATUS_LABELS": staff.STATUS_LABELS, "ROLES": roles.ROLES}


# --- the list and a person ------------------------------------------------------------------

@bp.route("/")
def index():
    filters = {key: (request.args.get(key) or "").strip() for key in ("department_id", "status", "role", "q")}
    if not filters["department_id"].isdigit():
        filters["department_id"] = ""
    page = request.args.get("page", "1")
    db = get_db()
    result = staff.search_staff(db, current_user, department_id=filters["department_id"] or None,
                                status=filters["status"], role=filters["role"], q=filters["q"],
                                page=int(page) if page.isdigit() else 1)
    return render_template("staff/index.html", result=result, filters=filters,
                           departments=users.list_departments(db),
                           link_args={k: v for k, v in filters.items() if v})


@bp.route("/<int:user_id>")
def person(user_id: int):
    return _render_person(user_id)


def _render_person(user_id: int, *, typed=None, errors=None, conflict=None, status=200):
    person = staff.staff_person(get_db(), current_user, user_id)
    form = typed or {"status": "", "starts_on": dates.office_today().isoformat(), "ends_on": "",
                     "reason": "", "version": person["account"]["version"]}
    return render_template("staff/person.html", person=person, form=form, errors=errors or {},
                           conflict=conflict), status


STATUS_CONFLICT = ("この画面を開いた後に、別の管理者か名簿の取り込みがこの職員を更新したため、保存しませんでした。"
                   "入力した内容はこの画面に残してあります。上の履歴で最新の状態を確かめてから、もう一度保存してください。")


@bp.route("/<int:user_id>/status", methods=["POST"])
def change_status(user_id: int):
    typed = {key: request.form.get(key, "") for key in ("status", "starts_on", "ends_on", "reason", "version")}
    try:
        # A form without a version is as stale as an old one: never an unchecked change.
        staff.change_status(get_db(), current_user, user_id, status=typed["status"],
                            starts_on=typed["starts_on"], ends_on=typed["ends_on"] or None,
                            reason=typed["reason"], version=typed["version"])
    except Invalid as error:
        return _render_person(user_id, typed=typed, errors=error.errors, status=422)
    except Conflict:
        return _render_person(user_id, typed=typed, conflict=STATUS_CONFLICT, status=409)
    flash("在籍区分を記録しました。", "success")
    return redirect(url_for("staff.person", user_id=user_id))


# --- the roster upload ------------------------------------------------------------------------

def _managers() -> frozenset:
    path = current_app.config["POSITIONS_FILE"] or str(Path(current_app.config["SEED_DIR"]) / "positions.yaml")
    return roster.load_positions(path)


def _upload_path(token: str) -> Path:
    """The stored upload of a preview this session made (400 for any other token)."""
    if token not in session.get("roster_previews", []):
        abort(400)
    return uploads.held(token, "roster-{}.upload")


def _keep_upload(data: bytes) -> str:
    token = secrets.token_hex(16)
    # Bound to this admin's session: a token seen elsewhere cannot commit the file.
    session["roster_previews"] = (session.get("roster_previews", []) + [token])[-KEPT_PREVIEWS:]
    _upload_path(token).write_bytes(data)
    return token


def _render_import(status=200, **context):
    context.setdefault("errors", None)
    context.setdefault("plan", None)
    context.setdefault("deactivate_missing", False)
    return render_template("staff/import.html", shown_rows=SHOWN_ROWS,
                           field_labels=roster.FIELD_LABELS, **context), status


@bp.route("/import", methods=["GET", "POST"])
def import_file():
    """Upload a roster file and preview what it would change; nothing is written yet."""
    if request.method == "GET":
        return _render_import()
    deactivate_missing = bool(request.form.get("deactivate_missing"))
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return _render_import(422, deactivate_missing=deactivate_missing,
                              errors=[roster.Problem(None, None, "取り込む職員名簿のファイルを選んでください。")])
    data = upload.read(roster.MAX_BYTES + 1)
    try:
        plan = roster.import_staff(get_db(), current_user, data, upload.filename, managers=_managers(),
                                   deactivate_missing=deactivate_missing, dry_run=True)
    except Invalid as error:
        return _render_import(422, errors=_problems(error), filename=upload.filename,
                              deactivate_missing=deactivate_missing)
    return _render_import(plan=plan, token=_keep_upload(data), filename=upload.filename,
                          deactivate_missing=deactivate_missing)


def _problems(error: Invalid) -> list:
    if isinstance(error, roster.RosterInvalid):
        return error.problems
    return [roster.Problem(None, where, message) for where, messages in error.errors.items()
            for message in messages]


STALE_MESSAGE = ("プレビューを表示した後に職員の情報が変わったため（別の取り込みや手作業の変更）、取り込みませんでした。"
                 "何も変更していません。下に、いまの状態で取り込むとどうなるかを表示し直しました。確かめてから、"
                 "もう一度「取り込む」を押してください。")


@bp.route("/import/commit", methods=["POST"])
def commit_import():
    token = request.form.get("token", "")
    path = _upload_path(token)
    filename = request.form.get("filename", "") or "roster.csv"
    deactivate_missing = request.form.get("deactivate_missing") == "1"
    if not path.exists():
        flash("プレビューの有効期限が切れました。もう一度ファイルを選んでください。", "error")
        return redirect(url_for("staff.import_file"))
    db, data = get_db(), path.read_bytes()
    options = {"managers": _managers(), "deactivate_missing": deactivate_missing}
    try:
        plan = roster.import_staff(db, current_user, data, filename, **options,
                                   confirmed=request.form.get("confirmed") == "1",
                                   expected=request.form.get("fingerprint", ""))
    except roster.StalePreview as stale:
        return _render_import(409, plan=stale.plan, token=token, filename=filename,
                              deactivate_missing=deactivate_missing, stale=STALE_MESSAGE)
    except roster.TooManyDeactivations as guard:
        # The core refused: ask again, showing how many and who, before anything is written.
        return render_template("staff/confirm.html", plan=guard.plan, token=token, filename=filename,
                               deactivate_missing=deactivate_missing), 409
    except Invalid as error:  # the file was checked at preview; the departments may have moved
        path.unlink(missing_ok=True)
        return _render_import(422, errors=_problems(error), filename=filename,
                              deactivate_missing=deactivate_missing)
    path.unlink(missing_ok=True)
    session["roster_previews"] = [t for t in session.get("roster_previews", []) if t != token]
    counts = plan.summary()
    if plan.applied:
        flash(f"取り込みました：新規 {counts['added']}人、更新 {counts['updated']}人、"
              f"変更なし {counts['unchanged']}人、無効化 {counts['deactivated']}人。", "success")
    else:
        flash("変更はありませんでした（同じ内容が取り込み済みです）。", "info")
    return redirect(url_for("staff.index"))
