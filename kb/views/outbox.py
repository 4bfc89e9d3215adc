"""/mail: the outbox for reviewers and admins — what is queued, sent and failed, one mail's
text, and 「再送する」 for a failed one. Everyone else gets 403 from the core."""

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from kb import mail
from kb.db import get_db

bp = Blueprint("outbox", __name__, url_prefix="/mail")


@bp.context_processor
def _vocabularies():
    return {"MAIL_STATUSES": mail.STATUSES, "MAIL_STATUS_LABELS": mail.STATUS_LABELS,
            "MAIL_KIND_LABELS": mail.KIND_LABELS,
            "mail_on": mail.is_enabled(current_app.config), "local_time": mail.local_time}


@bp.route("/")
def index():
    page = request.args.get("page", "1")
    result = mail.list_outbox(get_db(), current_user, status=request.args.get("status", ""),
                              kind=request.args.get("kind", ""),
                              page=int(page) if page.isdigit() else 1)
    link_args = {key: result[key] for key in ("status", "kind") if result[key]}
    return render_template("outbox/index.html", result=result, link_args=link_args)


@bp.route("/<int:mail_id>")
def show(mail_id: int):
    return render_template("outbox/show.html", mail=mail.get_mail(get_db(), current_user, mail_id))


@bp.route("/<int:mail_id>/requeue", methods=["POST"])
def requeue(mail_id: int):
    if mail.requeue_mail(get_db(), current_user, mail_id):
        flash("送信待ちに戻しました。次の送信で送られます。", "success")
    else:
        flash("このメールは送信失敗の状態ではないため、何もしませんでした（すでに再送済みか、送信済みです）。", "info")
    return redirect(url_for("outbox.show", mail_id=mail_id))
