"""言い換え（同義語）: the reviewers' pages for the search vocabulary, and its CSV."""

import secrets
from pathlib import Path

from flask import (Blueprint, Response, current_app, flash, redirect, render_template, request,
                   url_for)
from flask_login import current_user

from kb import imports, roles, vocabulary
from kb.db import get_db
from kb.exceptions import Conflict, Invalid, NotFound
from kb.views import uploads

bp = Blueprint("vocabulary", __name__, url_prefix="/admin/vocabulary")


CONFLICT_MESSAGE = ("このグループは、あなたが画面を開いた後に別の人が変更しています。あなたの入力はこの画面に"
                    "残してあります（まだ保存していません）。入力を控えてから一覧を開き直し、最新の内容に"
                    "あらためて反映してください。")
DELETED_MESSAGE = ("このグループは、あなたが画面を開いた後に別の人が削除しました。あなたの入力はこの画面に残して"
                   "あります（まだ保存していません）。「保存」を押すと、新しいグループとして追加します。")
STALE_SEED_MESSAGE = ("この一覧を開いた後に、言い換えが変更されたため、取り込みませんでした（何も変更していません）。"
                      "いまの内容と比べ直した一覧を下に表示しています。確かめてから、もう一度「取り込む」を押してください。")
STALE_UPLOAD_MESSAGE = ("確認の画面を開いた後に、言い換えが変更されたため、反映しませんでした（何も変更していません）。"
                        "いまの内容と比べ直した結果を下に表示しています。確かめてから、もう一度「反映する」を押してください。")


@bp.before_request
def _reviewers_only():
    roles.require_role(current_user, "reviewer")


@bp.route("")
def index():
    q = (request.args.get("q") or "").strip()[:30]
    return render_template("vocabulary/index.html", q=q,
                           groups=vocabulary.list_groups(get_db(), current_user, q=q),
                           version=vocabulary.current_version(get_db()),
                           from_seed=_seed_count())


def _seed_count() -> int:
    try:
        return vocabulary.count_seed_proposals(get_db(), _seed_path())
    except Invalid:  # the seed page says why; the list works without it
        return 0


def _seed_path() -> Path:
    return Path(current_app.config["SEED_DIR"]) / "vocabulary.csv"


@bp.route("/seed", methods=["GET", "POST"])
def seed():
    """The shipped seed list's groups and words this vocabulary lacks; add the chosen ones."""
    db = get_db()
    if request.method == "GET":
        return _seed_page(db, None)
    chosen = request.form.getlist("key")
    try:
        added = vocabulary.add_from_seed(db, current_user, _seed_path(), chosen,
                                         request.form.get("version", ""))
    except Conflict:
        return _seed_page(db, set(chosen), notice=STALE_SEED_MESSAGE, status=409)
    except Invalid as error:
        return _seed_page(db, set(chosen), errors=error.errors, status=422)
    flash(f"標準の言い換えから{len(added)}件を取り込みました。次の検索から使われます。", "success")
    return redirect(url_for("vocabulary.index"))


def _seed_page(db, chosen, *, errors=None, notice=None, status=200):
    errors = dict(errors or {})
    try:
        proposals = vocabulary.seed_proposals(db, current_user, _seed_path())
    except Invalid as error:  # the seed file itself cannot be read
        proposals = None
        errors.setdefault("seed", []).extend(error.errors["seed"])
    return render_template("vocabulary/seed.html", proposals=proposals, chosen=chosen,
                           errors=errors, notice=notice,
                           version=vocabulary.current_version(db)), status


def _typed(form) -> dict:
    return {"words": form.get("words", ""), "narrower": form.get("narrower", ""),
            "note": form.get("note", ""), "version": form.get("version", "")}


@bp.route("/new", methods=["GET", "POST"])
def new():
    if request.method == "GET":
        # The query log's 「言い換えを追加」 opens this with the query as the first words.
        typed = {"words": (request.args.get("words") or "")[:200], "narrower": "", "note": ""}
        return render_template("vocabulary/form.html", group=None, typed=typed, errors={})
    try:
        vocabulary.create_group(get_db(), current_user, vocabulary.Draft.from_form(request.form))
    except Invalid as error:
        return render_template("vocabulary/form.html", group=None, typed=_typed(request.form),
                               errors=error.errors), 422
    flash("言い換えのグループを追加しました。次の検索から使われます。", "success")
    return redirect(url_for("vocabulary.index"))


@bp.route("/<int:group_id>/edit", methods=["GET", "POST"])
def edit(group_id: int):
    db = get_db()
    try:
        group = vocabulary.get_group(db, current_user, group_id)
    except NotFound:
        if request.method == "GET":
            raise
        # Deleted while this form was open: a 404 page would lose what was typed.
        return render_template("vocabulary/form.html", group=None, typed=_typed(request.form),
                               errors={}, notice=DELETED_MESSAGE,
                               action=url_for("vocabulary.new")), 409
    if request.method == "GET":
        typed = {"words": "、".join(group["words"]), "narrower": "、".join(group["narrower"]),
                 "note": group["note"], "version": group["version"]}
        return render_template("vocabulary/form.html", group=group, typed=typed, errors={})
    typed = _typed(request.form)
    try:
        vocabulary.update_group(db, current_user, group_id,
                                vocabulary.Draft.from_form(request.form), typed["version"])
    except Invalid as error:
        return render_template("vocabulary/form.html", group=group, typed=typed,
                               errors=error.errors), 422
    except Conflict:
        return render_template("vocabulary/form.html", group=group, typed=typed, errors={},
                               notice=CONFLICT_MESSAGE), 409
    flash("言い換えのグループを保存しました。次の検索から使われます。", "success")
    return redirect(url_for("vocabulary.index"))


@bp.route("/<int:group_id>/delete", methods=["GET", "POST"])
def delete(group_id: int):
    db = get_db()
    group = vocabulary.get_group(db, current_user, group_id)
    if request.method == "GET":
        return render_template("vocabulary/delete.html", group=group, version=group["version"])
    version = request.form.get("version", "")
    try:
        vocabulary.delete_group(db, current_user, group_id, version)
    except Conflict:
        return render_template("vocabulary/delete.html", group=group, version=version,
                               notice="このグループは、あなたが画面を開いた後に変更されています。"
                                      "削除していません。いまの内容を確かめてください。"), 409
    flash(f"言い換えのグループ（{'・'.join(group['words'] + group['narrower'])}）を削除しました。", "success")
    return redirect(url_for("vocabulary.index"))


@bp.route("/history")
def history():
    return render_template("vocabulary/history.html",
                           changes=vocabulary.history(get_db(), current_user))


@bp.route("/download")
def download():
    return Response(vocabulary.export_csv(get_db(), current_user), mimetype="text/csv",
                    headers={"Content-Disposition": "attachment; filename=vocabulary.csv"})


def _upload_path(token: str) -> Path:
    return uploads.held(token, "{}.vocabulary")


def _preview(data: bytes, filename: str, *, status: int = 200, notice: str | None = None):
    try:
        plan = vocabulary.plan_upload(get_db(), current_user, data)
    except Invalid as error:
        return render_template("vocabulary/upload.html", plan=None, errors=error.errors,
                               filename=filename), 422
    token = secrets.token_hex(16)
    _upload_path(token).write_bytes(data)
    return render_template("vocabulary/upload.html", plan=plan, errors=None, token=token,
                           filename=filename, notice=notice), status


@bp.route("/upload", methods=["GET", "POST"])
def upload():
    """Upload a CSV and preview what it would change; nothing is written yet."""
    if request.method == "GET":
        return render_template("vocabulary/upload.html", plan=None, errors=None)
    file = request.files.get("file")
    if file is None or not file.filename:
        return render_template("vocabulary/upload.html", plan=None,
                               errors={"ファイル": ["CSVファイルを選んでください。"]}), 422
    return _preview(file.read(imports.MAX_BYTES + 1), file.filename)


@bp.route("/upload/apply", methods=["POST"])
def apply_upload():
    path = _upload_path(request.form.get("token", ""))
    filename = request.form.get("filename", "vocabulary.csv")
    if not path.exists():
        flash("確認の有効期限が切れました。もう一度ファイルを選んでください。", "error")
        return redirect(url_for("vocabulary.upload"))
    data = path.read_bytes()
    try:
        plan = vocabulary.apply_upload(get_db(), current_user, data, request.form.get("version", ""))
    except Invalid as error:
        return render_template("vocabulary/upload.html", plan=None, errors=error.errors,
                               filename=filename), 422
    except Conflict:
        return _preview(data, filename, status=409, notice=STALE_UPLOAD_MESSAGE)
    finally:
        path.unlink(missing_ok=True)
    flash(f"反映しました：追加 {len(plan.added)}件、変更 {len(plan.changed)}件、削除 {len(plan.removed)}件、"
          f"変更なし {plan.unchanged}件。次の検索から使われます。" if plan.changes
          else "変更はありませんでした（同じ内容です）。", "success")
    return redirect(url_for("vocabulary.index"))
