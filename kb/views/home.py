"""これからの作業: pick the task you are about to do, see its checklist items and past cases."""

from flask import Blueprint, render_template, request
from flask_login import current_user

from kb import cases, checklist
from kb.db import get_db

bp = Blueprint("home", __name__)


@bp.route("/")
def index():
    task = request.args.get("task")
    if task not in cases.TASKS:
        return render_template("home/index.html", task=None, tasks=cases.TASKS)
    db = get_db()
    return render_template(
        "home/index.html", task=task, tasks=cases.TASKS,
        items=checklist.current_items(db, task=task),
        recent=cases.recent_cases_for_task(db, current_user, task),
    )
