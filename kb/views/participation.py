"""自己点検 participation: figures per 部 and 課 with charts and CSV, the weak points, and
the correlation with reports (reviewers; managers see the figures)."""

from flask import Blueprint, Response, render_template
from flask_login import current_user

from kb import participation, participation_charts
from kb.db import get_db

bp = Blueprint("participation", __name__, url_prefix="/participation")


@bp.route("")
def index():
    return render_template("participation/index.html",
                           campaigns=participation_charts.list_campaigns(get_db(), current_user))


@bp.route("/<int:campaign_id>")
def show(campaign_id: int):
    data = participation_charts.figures(get_db(), current_user, campaign_id)
    return render_template("participation/show.html", data=data,
                           sort=participation_charts.sorted_for_chart,
                           min_group=participation_charts.MIN_GROUP,
                           reason_label=participation.reason_label)


@bp.route("/<int:campaign_id>.csv")
def figures_csv(campaign_id: int):
    body = participation_charts.figures_csv(get_db(), current_user, campaign_id)
    return Response(body, mimetype="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="selfcheck-{campaign_id}-participation.csv"'})


@bp.route("/<int:campaign_id>/weak-points")
def weak_points(campaign_id: int):
    return render_template("participation/weak_points.html",
                           data=participation_charts.weak_points(get_db(), current_user, campaign_id))


@bp.route("/<int:campaign_id>/correlation")
def correlation(campaign_id: int):
    data = participation_charts.correlation(get_db(), current_user, campaign_id)
    return render_template("participation/correlation.html", data=data,
                           top=participation_charts.scatter_scale(data["bureaus"]))
