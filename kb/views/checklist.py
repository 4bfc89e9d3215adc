"""The personal-information checklist."""

from flask import Blueprint, render_template, request

from kb import cases, checklist
from kb.db import get_db

bp = Blueprint("checklist", __name__, url_prefix="/checklist")


@bp.route("")
def index():
    task = request.args.get("task")
    task = task if task in cases.TASKS else None
    db = get_db()
    return render_template("checklist/index.html", task=task, tasks=cases.TASKS,
                           version=checklist.current_version(db),
                           sections=checklist.current_sections(db, task=task))
