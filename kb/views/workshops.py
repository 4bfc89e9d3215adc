"""研修: trainers' workshops and what they print."""

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from flask_login import current_user

from kb import roles, users, workshops
from kb.db import get_db
from kb.exceptions import Conflict, Invalid
from kb.security import is_safe_next

bp = Blueprint("workshops", __name__, url_prefix="/workshops")


@bp.before_request
def _trainers_only():
    roles.require_role(current_user, "trainer")


@bp.route("", methods=["GET", "POST"])
def index():
    db = get_db()
    errors, typed = {}, {}
    if request.method == "POST":
        typed = {k: request.form.get(k, "") for k in ("title", "held_on", "audience_department_id")}
        try:
            workshop_id = workshops.create_workshop(db, current_user, **typed)
        except Invalid as error:
            errors = error.errors
        else:
            flash("研修を作りました。事例検索や事例のページの「研修に追加」で事例を入れてください。", "success")
            return redirect(url_for("workshops.show", workshop_id=workshop_id))
    return render_template("workshops/index.html", lists=workshops.list_workshops(db, current_user),
                           departments=users.list_departments(db), errors=errors, typed=typed), \
        (422 if errors else 200)


CONFLICT_MESSAGE = ("この画面を開いた後に、別の画面でこの研修が更新されたため、保存しませんでした。"
                    "あなたの入力はこの欄に残してあります。入力を控えてから画面を開き直し、"
                    "最新の内容を確認してからもう一度保存してください。")


@bp.route("/<int:workshop_id>", methods=["GET", "POST"])
def show(workshop_id: int):
    db = get_db()
    workshop = workshops.get_workshop(db, current_user, workshop_id)
    if request.method == "GET":
        return _render_show(workshop)
    form = request.form
    typed = {"title": form.get("title", ""), "held_on": form.get("held_on", ""),
             "audience_department_id": form.get("audience_department_id", ""),
             "questions": form.get("questions", "").splitlines(), "shared": form.get("shared") == "1"}
    try:
        # A form without a version is as stale as an old one: never an unchecked overwrite.
        workshops.update_workshop(db, current_user, workshop_id, **typed,
                                  version=form.get("version", ""))
    except Invalid as error:
        return _render_show(workshop, settings=_typed_settings(typed), errors=error.errors,
                            status=422)
    except Conflict:
        return _render_show(workshop, settings=_typed_settings(typed), status=409,
                            conflict={"form": "settings", "message": CONFLICT_MESSAGE})
    flash("研修を保存しました。", "success")
    return redirect(url_for("workshops.show", workshop_id=workshop_id))


def _typed_settings(typed: dict) -> dict:
    """The settings form as the trainer sent it, with the version it was opened at."""
    audience = typed["audience_department_id"]
    return dict(typed, audience_department_id=int(audience) if audience.isdigit() else None,
                version=request.form.get("version", ""))


def _render_show(workshop, *, settings=None, errors=None, status=200, conflict=None):
    """The workshop page; after a refused save, the refused form shows what was typed
    (``settings``, or ``conflict["note"]`` for one case's form) and the version it was
    opened at, while the rest of the page shows what is stored now."""
    db = get_db()
    return render_template(
        "workshops/show.html", workshop=workshop, settings=settings or workshop,
        errors=errors or {}, conflict=conflict or {},
        cases=workshops.workshop_cases(db, current_user, workshop["workshop_id"]),
        departments=users.list_departments(db)), status


@bp.route("/add", methods=["POST"])
def add():
    workshop_id = request.form.get("workshop_id", type=int)
    case_id = request.form.get("case_id", type=int)
    back = request.form.get("back")
    if not is_safe_next(back):
        back = url_for("home.index")
    if not workshop_id or not case_id:
        flash("追加先の研修を選んでください。", "error")
        return redirect(back)
    try:
        added = workshops.add_case(get_db(), current_user, workshop_id, case_id)
    except Invalid as error:
        flash(error.errors["case_id"][0], "error")
    else:
        flash("研修に追加しました。" if added else "この事例は既にその研修に入っています。", "success")
    return redirect(back)


@bp.route("/<int:workshop_id>/cases/<int:case_id>", methods=["POST"])
def change_case(workshop_id: int, case_id: int):
    db = get_db()
    action = request.form.get("action")
    version = request.form.get("version", "")
    try:
        if action == "up":
            workshops.move_case(db, current_user, workshop_id, case_id, -1, version=version)
        elif action == "down":
            workshops.move_case(db, current_user, workshop_id, case_id, +1, version=version)
        elif action == "remove":
            workshops.remove_case(db, current_user, workshop_id, case_id, version=version)
        else:
            workshops.set_note(db, current_user, workshop_id, case_id,
                               request.form.get("note", ""), version=version)
            flash("メモを保存しました。", "success")
    except Invalid as error:
        flash(error.errors["note"][0], "error")
    except Conflict:
        return _render_show(workshops.get_workshop(db, current_user, workshop_id), status=409,
                            conflict={"form": f"case-{case_id}", "message": CONFLICT_MESSAGE,
                                      "note": request.form.get("note", ""), "version": version})
    return redirect(url_for("workshops.show", workshop_id=workshop_id) + f"#case-{case_id}")


@bp.route("/<int:workshop_id>/copy", methods=["POST"])
def copy(workshop_id: int):
    new_id = workshops.copy_workshop(get_db(), current_user, workshop_id)
    flash("研修をコピーしました。", "success")
    return redirect(url_for("workshops.show", workshop_id=new_id))


def _material(workshop_id: int):
    db = get_db()
    workshop = workshops.get_workshop(db, current_user, workshop_id)
    return workshop, workshops.workshop_cases(db, current_user, workshop_id)


@bp.route("/<int:workshop_id>/handout")
def handout(workshop_id: int):
    workshop, cases = _material(workshop_id)
    return render_template("workshops/handout.html", workshop=workshop, cases=cases,
                           what_happened=workshops.what_happened)


@bp.route("/<int:workshop_id>/handout.md")
def markdown(workshop_id: int):
    workshop, cases = _material(workshop_id)
    return _download(workshops.handout_markdown(workshop, cases).encode("utf-8"),
                     f"workshop-{workshop_id}.md", "text/markdown; charset=utf-8")


@bp.route("/<int:workshop_id>/cases.csv")
def csv_file(workshop_id: int):
    _, cases = _material(workshop_id)
    return _download(workshops.cases_csv(cases), f"workshop-{workshop_id}.csv",
                     "text/csv; charset=utf-8")


@bp.route("/<int:workshop_id>/quiz")
def quiz(workshop_id: int):
    workshop, cases = _material(workshop_id)
    return render_template("workshops/quiz.html", workshop=workshop, answers=False,
                           quiz=workshops.build_quiz(cases))


@bp.route("/<int:workshop_id>/answers")
def answers(workshop_id: int):
    workshop, cases = _material(workshop_id)
    return render_template("workshops/quiz.html", workshop=workshop, answers=True,
                           quiz=workshops.build_quiz(cases))


def _download(body: bytes, filename: str, mimetype: str) -> Response:
    return Response(body, mimetype=mimetype,
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})
