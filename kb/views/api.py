"""JSON for tools and for the filing form: the search contract and similar cases."""

from flask import Blueprint, current_app, jsonify, request, url_for
from flask_login import current_user

from kb import search
from kb.db import get_db

bp = Blueprint("api", __name__, url_prefix="/api")

MAX_LIMIT = 100


@bp.route("/search")
def search_json():
    """{"total": n, "hits": [{"case_id", "external_id", "title", "score"}]} — the same
    contract as `flask --app wsgi search QUERY --json`, for what this user may read."""
    limit = min(max(request.args.get("limit", 10, type=int), 1), MAX_LIMIT)
    result = search.search_cases(search.get_index(current_app.config["DATA_DIR"]), get_db(),
                                 current_user, request.args.get("q", ""), page_size=limit)
    return jsonify({"total": result.total, "hits": [
        {"case_id": hit["case_id"], "external_id": hit["external_id"], "title": hit["title"],
         "score": hit["score"]} for hit in result.hits]})


@bp.route("/similar")
def similar_json():
    """Published cases like the text being typed, with their countermeasures."""
    text = request.args.get("text", "")[:2000]
    hits = search.similar_cases(search.get_index(current_app.config["DATA_DIR"]), get_db(),
                                current_user, text=text,
                                incident_type=request.args.get("incident_type") or None,
                                limit=5)
    return jsonify({"hits": [
        {"case_id": hit["case_id"], "title": hit["title"],
         "url": url_for("cases.show", case_id=hit["case_id"]),
         "origin": hit["origin"], "lesson": hit["lesson"],
         "countermeasures": [m["text"] for m in hit["countermeasures"][:2]]}
        for hit in hits]})
