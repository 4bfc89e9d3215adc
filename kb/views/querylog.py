"""/admin/search-log: what search failed to find (reviewers), as a page and as CSV.
Everyone else gets 403 from the core."""

from urllib.parse import quote

from flask import Blueprint, Response, render_template, request
from flask_login import current_user

from kb import querylog
from kb.db import get_db
from kb.rendering import excel_csv

bp = Blueprint("querylog", __name__, url_prefix="/admin")

CSV_HEADER = ("週", "週の初日", "検索語", "件数", "検索回数", "結果0件", "事例を開いた回数")


def vocabulary_link(words: str) -> str:
    """「言い換えを追加」: the vocabulary's new-group form with the words filled in. A literal
    path, so this page does not depend on that blueprint being registered."""
    return f"{request.script_root}/admin/vocabulary/new?words={quote(words, safe='')}"


def _args() -> dict:
    page = request.args.get("page", "1")
    return {"which": request.args.get("list", ""), "sort": request.args.get("sort", ""),
            "page": int(page) if page.isdigit() else 1}


@bp.route("/search-log")
def index():
    result = querylog.search_log(get_db(), current_user, **_args())
    link_args = {"list": result["which"], "sort": result["sort"]}
    return render_template("querylog/index.html", result=result, link_args=link_args,
                           LISTS=querylog.LISTS, SORTS=querylog.SORTS,
                           keep_weeks=querylog.KEEP_WEEKS, vocabulary_link=vocabulary_link)


@bp.route("/search-log.csv")
def csv_file():
    args = _args()
    result = querylog.search_log(get_db(), current_user, which=args["which"],
                                 sort=args["sort"], page_size=None)
    body = excel_csv(CSV_HEADER, [[row["week"], row["week_label"], row["display"], row["count"],
                                   row["searches"], row["no_results"], row["opens"]]
                                  for row in result["rows"]])
    return Response(body, mimetype="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="search-log-{result["which"]}.csv"'})
