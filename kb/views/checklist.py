"""The personal-information checklist: overview with usage, item pages, 改訂候補, cards, links."""

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from kb import cases, checklist, users
from kb.db import get_db
from kb.exceptions import Conflict, Invalid, NotFound
from kb.views.cases import render_case

bp = Blueprint("checklist", __name__, url_prefix="/checklist")


@bp.route("")
def index():
    task = request.args.get("task")
    task = task if task in cases.TASKS else None
    db = get_db()
    usage = checklist.item_usage(db)
    most = max((u["cases"] for u in usage.values()), default=0) or 1
    return render_template("checklist/index.html", task=task, tasks=cases.TASKS,
                           version=checklist.current_version(db), usage=usage, most=most,
                           sections=checklist.current_sections(db, task=task))


@bp.route("/items/<code>")
def item(code: str):
    db = get_db()
    return render_template("checklist/item.html", item=checklist.get_item(db, code),
                           **checklist.item_cases(db, code))


@bp.route("/revision")
def revision():
    return render_template("checklist/revision.html",
                           groups=checklist.revision_candidates(get_db(), current_user))


@bp.route("/card")
def card():
    db = get_db()
    task = request.args.get("task")
    department_id = request.args.get("department", type=int)
    size = "a5" if request.args.get("size") == "a5" else "a4"
    if task in cases.TASKS:
        heading = cases.TASK_LABELS[task]
        content = checklist.card(db, task=task)
    elif department_id:
        try:
            heading = users.get_department(db, department_id)["name"]
        except NotFound:
            abort(404)
        content = checklist.card(db, department_id=department_id)
    else:
        return render_template("checklist/card_choose.html", tasks=cases.TASKS,
                               departments=users.list_departments(db))
    return render_template("checklist/card.html", heading=heading, size=size, task=task,
                           department_id=department_id, **content)


LINK_CONFLICT_MESSAGE = ("この画面を開いた後に、別の画面か別の人がこの結び付けを更新したため、保存しませんでした。"
                         "あなたが入力したコードはこの欄に残してあります。入力を控えてから画面を開き直し、"
                         "最新の結び付けを確認してからもう一度保存してください。")


@bp.route("/links/countermeasure/<int:countermeasure_id>", methods=["POST"])
def link_countermeasure(countermeasure_id: int):
    return _link(f"link-countermeasure-{countermeasure_id}",
                 lambda db, codes, version: checklist.set_countermeasure_items(
                     db, current_user, countermeasure_id, codes, version=version))


@bp.route("/links/case/<int:case_id>", methods=["POST"])
def link_case(case_id: int):
    return _link(f"link-case-{case_id}", lambda db, codes, version: checklist.set_case_items(
        db, current_user, case_id, codes, version=version))


def _link(form_name, change):
    case_id = request.form.get("case_id", type=int)
    if case_id is None:
        abort(400)
    typed = request.form.get("item_codes", "")
    codes = typed.replace("、", " ").replace(",", " ").split()
    # A form without a version is as stale as an old one: never an unchecked overwrite.
    version = request.form.get("version", "")
    try:
        change(get_db(), codes, version)
    except Invalid as error:
        for messages in error.errors.values():
            flash(messages[0], "error")
    except Conflict:
        return render_case(case_id, status=409, conflict={
            "form": form_name, "message": LINK_CONFLICT_MESSAGE,
            "typed": {"item_codes": typed, "version": version}})
    else:
        flash("チェックリストとの結び付けを保存しました。", "success")
    return redirect(url_for("cases.show", case_id=case_id) + "#countermeasures")
