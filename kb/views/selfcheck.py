"""自己点検 for every member of staff: the banner, one question per screen, the result."""

import logging
import sqlite3

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user

from kb import selfcheck
from kb.db import get_db
from kb.exceptions import Invalid

bp = Blueprint("selfcheck", __name__, url_prefix="/selfcheck")
log = logging.getLogger(__name__)


@bp.app_context_processor
def _banner():
    """The 「自己点検があります」 banner of every page (one indexed query)."""
    if not getattr(current_user, "is_authenticated", False) or request.blueprint == "selfcheck":
        return {"selfcheck_banner": None}
    try:
        return {"selfcheck_banner": selfcheck.banner(get_db(), current_user)}
    except sqlite3.OperationalError:
        # The error page of a locked or broken database must still render: no banner then.
        log.exception("self-check banner skipped")
        return {"selfcheck_banner": None}


@bp.route("/<int:campaign_id>")
def show(campaign_id: int):
    state = selfcheck.overview(get_db(), current_user, campaign_id)
    return render_template("selfcheck/show.html", state=state)


@bp.route("/<int:campaign_id>/start", methods=["POST"])
def start(campaign_id: int):
    try:
        attempt_id = selfcheck.start_attempt(get_db(), current_user, campaign_id)
    except Invalid as error:
        flash(error.errors["start"][0], "error")
        return redirect(url_for("selfcheck.show", campaign_id=campaign_id))
    return redirect(url_for("selfcheck.resume", campaign_id=campaign_id, attempt_id=attempt_id))


@bp.route("/<int:campaign_id>/attempts/<int:attempt_id>")
def resume(campaign_id: int, attempt_id: int):
    position = selfcheck.next_position(get_db(), current_user, campaign_id, attempt_id)
    if position is None:
        return redirect(url_for("selfcheck.result", campaign_id=campaign_id, attempt_id=attempt_id))
    return redirect(url_for("selfcheck.question", campaign_id=campaign_id, attempt_id=attempt_id,
                            position=position))


@bp.route("/<int:campaign_id>/attempts/<int:attempt_id>/<int:position>", methods=["GET", "POST"])
def question(campaign_id: int, attempt_id: int, position: int):
    db = get_db()
    if request.method == "POST":
        try:
            selfcheck.answer_question(db, current_user, campaign_id, attempt_id, position,
                                      request.form.get("answer", ""))
        except Invalid as error:
            shown = selfcheck.question(db, current_user, campaign_id, attempt_id, position)
            return render_template("selfcheck/question.html", shown=shown,
                                   error=error.errors["answer"][0]), 409
        # The answer's response is the page that says whether it was right — no redirect,
        # so an answer costs one request. Reloading it (kb.js turns it into a GET of the
        # same address) or sending it again records nothing new.
    shown = selfcheck.question(db, current_user, campaign_id, attempt_id, position)
    return render_template("selfcheck/question.html", shown=shown, error=None)


@bp.route("/<int:campaign_id>/attempts/<int:attempt_id>/result")
def result(campaign_id: int, attempt_id: int):
    outcome = selfcheck.result(get_db(), current_user, campaign_id, attempt_id)
    return render_template("selfcheck/result.html", outcome=outcome)
