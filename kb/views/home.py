"""これからの作業: pick the task you are about to do, see its checklist items and past cases."""

from flask import Blueprint, current_app, render_template, request
from flask_login import current_user

from kb import cases, checklist, search
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
        recent=search.search_cases(search.get_index(current_app.config["DATA_DIR"]), db,
                                   current_user, "", filters={"task": task}, sort="date",
                                   page_size=8).hits,
    )
