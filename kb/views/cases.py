"""Reading cases: the list with its filters, and one case."""

from flask import Blueprint, current_app, render_template, request
from flask_login import current_user

from kb import cases, reports, workflow
from kb.db import get_db

bp = Blueprint("cases", __name__, url_prefix="/cases")

FILTERS = ("kind", "origin", "task", "incident_type")


@bp.route("")
def index():
    filters = {name: request.args.get(name) or None for name in FILTERS}
    q = request.args.get("q", "")[:200]
    result = cases.list_cases(get_db(), current_user, q=q, page=request.args.get("page", 1, int),
                              page_size=current_app.config["PAGE_SIZE"], **filters)
    return render_template("cases/index.html", result=result, filters=filters, q=q)


@bp.route("/<int:case_id>")
def show(case_id: int):
    db = get_db()
    case = cases.read_case(db, current_user, case_id)
    return render_template("cases/show.html", case=case, label_of=reports.label_of,
                           **workflow.case_context(db, current_user, case_id))
