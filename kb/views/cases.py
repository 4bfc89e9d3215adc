"""事例検索 (the search page with its filters) and the case page."""

import re

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask_login import current_user

from kb import cases, checklist, querylog, reports, search, workflow
from kb.db import get_db

bp = Blueprint("cases", __name__, url_prefix="/cases")

# Filters whose values come from a vocabulary; the others are free values from the index.
VOCABULARY_FILTERS = {
    "kind": cases.KINDS, "origin": cases.ORIGINS, "task": cases.TASKS,
    "incident_type": cases.INCIDENT_TYPES, "rule_status": tuple(cases.RULE_STATUS_LABELS),
}
FREE_FILTERS = {"department": r".{1,60}", "municipality": r".{1,40}", "year": r"\d{4}",
                "items": r"\d{1,2}-\d{1,2}"}
FILTER_LABELS = {"kind": "区分", "origin": "出所", "task": "作業", "incident_type": "種別",
                 "department": "担当課・所属", "municipality": "自治体", "year": "年",
                 "items": "チェック項目", "rule_status": "ルールの状況"}


def parse_filters(args) -> tuple[dict, list[str]]:
    """The valid filters of a request, and a notice for each value that was ignored."""
    filters, notices = {}, []
    for name in search.FACETS:
        value = (args.get(name) or "").strip()
        if not value:
            continue
        allowed = VOCABULARY_FILTERS.get(name)
        if (allowed is not None and value in allowed) or (
                allowed is None and re.fullmatch(FREE_FILTERS[name], value)):
            filters[name] = value
        else:
            notices.append(f"「{FILTER_LABELS[name]}」の条件「{value[:20]}」は使えないため外しました。")
    return filters, notices


@bp.route("")
def index():
    q = request.args.get("q")
    filters, notices = parse_filters(request.args)
    if q is not None and not q.strip() and not filters:
        return redirect(url_for("home.index"))
    sort = "date" if request.args.get("sort") == "date" else "relevance"
    page = max(1, request.args.get("page", 1, type=int))
    page_size = current_app.config["PAGE_SIZE"]
    exact = request.args.get("exact") == "1"  # only the typed words, no 言い換え
    result = search.search_cases(search.get_index(current_app.config["DATA_DIR"]), get_db(),
                                 current_user, q or "", filters=filters, sort=sort, page=page,
                                 page_size=page_size, exact=exact)
    # The query log (what search fails to find): never who searched. 「検索する」 on the log
    # page sends nolog, so a reviewer checking a query does not count it again.
    logged = not request.args.get("nolog")
    if logged:
        querylog.record_search(get_db(), q or "", found=result.total, filters=filters, page=page)
    return render_template(
        "cases/index.html", result=result, q=q or "", filters=filters, sort=sort, page=page,
        page_size=page_size, open_q=(q or None) if logged else None,
        pages=max(1, -(-result.total // page_size)), notices=notices + result.notices,
        filter_labels=FILTER_LABELS, suggestions=_broader(q or ""), exact=exact,
        link_args=search_link_args(q or "", filters, sort, exact=exact),
    )


def search_link_args(q: str, filters: dict, sort: str, *, exact: bool = False) -> dict:
    """The arguments of this search's links (chips, facets, pages): the parsed query, filters,
    sort and ``exact`` only. Raw query parameters never reach url_for, where names such as
    ``endpoint`` or ``_external`` would fail the page or make the links absolute."""
    args = dict(filters)
    if q:
        args["q"] = q
    if sort == "date":
        args["sort"] = sort
    if exact:
        args["exact"] = "1"
    return args


def _broader(q: str) -> list[str]:
    """Each word of a multi-word query on its own: broader searches to offer."""
    words = q.split()
    return words if len(words) > 1 else []


@bp.route("/<int:case_id>")
def show(case_id: int):
    response = render_case(case_id)
    if request.args.get("q"):  # opened from a result list: the search found something useful
        querylog.record_open(get_db(), request.args["q"])
    return response


def render_case(case_id: int, *, status: int = 200, conflict: dict | None = None):
    """The case page. The case page's forms answer a stale save with it (409), passing
    ``conflict``: {"form": which form, "message": why, "typed": what the user sent}, so
    the form shows the explanation and keeps what was typed."""
    db = get_db()
    case = cases.read_case(db, current_user, case_id)
    similar = search.similar_cases(
        search.get_index(current_app.config["DATA_DIR"]), db, current_user,
        text=f"{case['title']}\n{case['summary']}", exclude=case_id,
        incident_type=case["incident_type"], limit=5)
    return render_template("cases/show.html", case=case, label_of=reports.label_of,
                           similar=similar, can_link=checklist.may_link(current_user, case),
                           current_codes=checklist.current_codes(db), conflict=conflict or {},
                           **workflow.case_context(db, current_user, case_id)), status
