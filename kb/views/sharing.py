"""Reviewers download the office's published cases for other municipalities (kb/sharing.py)."""

from flask import Blueprint, Response, current_app, render_template, request
from flask_login import current_user

from kb import sharing
from kb.db import get_db
from kb.exceptions import Invalid, PersonalDataInExport

bp = Blueprint("sharing", __name__, url_prefix="/sharing")


@bp.route("/export", methods=["GET", "POST"])
def export():
    """GET: the choices (and whether the settings allow an export). POST: the file as a
    download, or the page again with the messages or the personal-data findings."""
    if request.method == "GET":
        return _page(sharing.page_state(get_db(), current_user, current_app.config), {})
    form = {"format": request.form.get("format", "jsonl"),
            "encoding": request.form.get("encoding", "utf-8"),
            "since": request.form.get("since", "").strip()}
    try:
        # JSON Lines is UTF-8; the encoding choice is the CSV's.
        result = sharing.export_cases(
            get_db(), current_user, current_app.config, fmt=form["format"],
            encoding=form["encoding"] if form["format"] == "csv" else "utf-8",
            since=form["since"])
    except Invalid as error:
        return _page(sharing.page_state(get_db(), current_user, current_app.config), form,
                     errors=error.errors), 422
    except PersonalDataInExport as found:
        return _page(sharing.page_state(get_db(), current_user, current_app.config), form,
                     findings=found.findings), 422
    mimetype = "text/csv" if result.format == "csv" else "application/x-ndjson"
    charset = "shift_jis" if result.encoding == "cp932" else "utf-8"
    return Response(result.data, content_type=f"{mimetype}; charset={charset}", headers={
        "Content-Disposition": f'attachment; filename="{result.filename}"',
        "Cache-Control": "no-store"})


def _page(state, form, *, errors=None, findings=None):
    return render_template("sharing/export.html", state=state, form=form,
                           errors=errors or {}, findings=findings or [])
