"""集計: the dashboard and its CSV files."""

from flask import Blueprint, Response, abort, render_template, request
from flask_login import current_user

from kb import dashboard, users
from kb.db import get_db
from kb.exceptions import Invalid
from kb.rendering import excel_csv

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")

ARGS = ("start", "end", "department_id", "origin")


def _filters():
    return dashboard.parse_filters(current_user, **{k: request.args.get(k, "") for k in ARGS})


@bp.route("")
def index():
    db = get_db()
    try:
        filters = _filters()
    except Invalid as error:
        return render_template("dashboard/index.html", errors=error.errors, data=None,
                               filters=dict(request.args), args={},
                               departments=users.list_departments(db)), 422
    args = {k: request.args.get(k) for k in ARGS if request.args.get(k)}
    return render_template("dashboard/index.html", errors={}, filters=filters, args=args,
                           data=dashboard.collect(db, current_user, filters),
                           departments=users.list_departments(db))


@bp.route("/<chart>.csv")
def chart_csv(chart: str):
    if chart not in dashboard.CSV_COLUMNS:
        abort(404)
    try:
        filters = _filters()
    except Invalid:
        abort(400)
    header, keys = dashboard.CSV_COLUMNS[chart]
    rows = dashboard.collect(get_db(), current_user, filters)[chart]
    body = excel_csv(header, [[_cell(row.get(key)) for key in keys] for row in rows])
    return Response(body, mimetype="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="dashboard-{chart}.csv"'})


def _cell(value):
    if value is True:
        return "はい"
    if value is False or value is None:
        return ""
    return value
