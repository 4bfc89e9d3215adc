"""自己点検 for reviewers: the list, the settings form, the question editor, open and close,
the figures and the CSV of results."""

from flask import (Blueprint, Response, current_app, flash, redirect, render_template, request,
                   url_for)
from flask_login import current_user

from kb import campaigns, checklist, participation, roles, search, users
from kb.db import get_db
from kb.exceptions import Conflict, Invalid

bp = Blueprint("campaigns", __name__, url_prefix="/campaigns")

CONFLICT_MESSAGE = ("この画面を開いた後に、別の画面でこの自己点検が更新されたため、保存しませんでした。"
                    "あなたの入力はこの欄に残してあります。画面を開き直して最新の内容を確認してから、"
                    "もう一度保存してください。")
SETTINGS = ("title", "opens_at", "closes_at", "questions_per_person", "pass_mark", "retakes")


@bp.before_request
def _reviewers_only():
    roles.require_role(current_user, "reviewer")


def _typed_settings() -> dict:
    form = request.form
    typed = {key: form.get(key, "") for key in SETTINGS}
    typed["whole_office"] = form.get("target", "whole") == "whole"
    typed["department_ids"] = form.getlist("department_ids")
    return typed


def _render_form(campaign, typed, errors=None, conflict=None, status=200):
    return render_template("campaigns/form.html", campaign=campaign, typed=typed,
                           errors=errors or {}, conflict=conflict,
                           departments=users.list_departments(get_db())), status


@bp.route("")
def index():
    return render_template("campaigns/index.html",
                           campaigns=campaigns.list_campaigns(get_db(), current_user))


@bp.route("/new", methods=["GET", "POST"])
def new():
    if request.method == "GET":
        return _render_form(None, {"whole_office": True, "retakes": "until_passed",
                                   "questions_per_person": "10", "pass_mark": "8",
                                   "department_ids": []})
    typed = _typed_settings()
    try:
        campaign_id = campaigns.create_campaign(get_db(), current_user, **typed)
    except Invalid as error:
        return _render_form(None, typed, error.errors, status=422)
    flash("自己点検を作りました。次にチェックリストから問題を作ってください。", "success")
    return redirect(url_for("campaigns.show", campaign_id=campaign_id))


@bp.route("/<int:campaign_id>/edit", methods=["GET", "POST"])
def edit(campaign_id: int):
    db = get_db()
    campaign = campaigns.get_campaign(db, current_user, campaign_id)
    if request.method == "GET":
        typed = {key: campaign[key] if campaign[key] is not None else "" for key in SETTINGS}
        typed.update(whole_office=bool(campaign["whole_office"]),
                     department_ids=[str(d) for d in campaign["department_ids"]],
                     version=campaign["version"])
        return _render_form(campaign, typed)
    typed = _typed_settings()
    try:
        # A form without a version is as stale as an old one: never an unchecked overwrite.
        campaigns.update_campaign(db, current_user, campaign_id,
                                  version=request.form.get("version", ""), **typed)
    except Invalid as error:
        return _render_form(campaign, dict(typed, version=request.form.get("version", "")),
                            error.errors, status=422)
    except Conflict:
        return _render_form(campaign, dict(typed, version=request.form.get("version", "")),
                            conflict=CONFLICT_MESSAGE, status=409)
    flash("設定を保存しました。", "success")
    return redirect(url_for("campaigns.show", campaign_id=campaign_id))


def _render_show(campaign_id: int, *, errors=None, typed=None, conflict=None, status=200):
    db = get_db()
    campaign = campaigns.get_campaign(db, current_user, campaign_id)
    report = participation.participation(db, current_user, campaign_id) \
        if campaign["status"] != "draft" else None
    rates = participation.item_rates(db, current_user, campaign_id) \
        if campaign["status"] != "draft" else []
    return render_template("campaigns/show.html", campaign=campaign, report=report, rates=rates,
                           sections=checklist.current_sections(db), errors=errors or {},
                           typed=typed or {}, conflict=conflict,
                           departments={d["department_id"]: d for d in users.list_departments(db)},
                           reason_label=participation.reason_label), status


@bp.route("/<int:campaign_id>")
def show(campaign_id: int):
    return _render_show(campaign_id)


def _act(campaign_id: int, action, success, typed=None):
    """Run one write of the campaign page; refused ones show the page again with the
    message beside the form that was sent and what was typed. ``success`` is the message
    flashed (``{outcome}`` is what the write returned), or a function making it."""
    try:
        outcome = action()
    except Invalid as error:
        return _render_show(campaign_id, errors=error.errors, typed=typed, status=422)
    except Conflict:
        return _render_show(campaign_id, typed=typed, conflict=CONFLICT_MESSAGE, status=409)
    flash(success(outcome) if callable(success) else success.format(outcome=outcome), "success")
    return redirect(url_for("campaigns.show", campaign_id=campaign_id))


@bp.route("/<int:campaign_id>/generate", methods=["POST"])
def generate(campaign_id: int):
    form = request.form
    return _act(campaign_id, lambda: campaigns.generate_questions(
        get_db(), current_user, campaign_id, section_codes=form.getlist("section_codes"),
        item_codes=form.getlist("item_codes"), version=form.get("version", "")),
        "チェックリストから{outcome}問を作りました。一つずつ確かめて、必要なら直してください。")


def _typed_question() -> dict:
    form = request.form
    return {key: form.get(key, "") for key in ("statement", "answer", "item_code", "explanation",
                                               "case_id")}


@bp.route("/<int:campaign_id>/questions", methods=["POST"])
def add_question(campaign_id: int):
    typed = _typed_question()
    return _act(campaign_id, lambda: campaigns.add_question(
        get_db(), current_user, campaign_id, version=request.form.get("version", ""), **typed),
        "問題を追加しました。", typed={"new": typed})


@bp.route("/<int:campaign_id>/questions/<int:question_id>", methods=["GET", "POST"])
def question(campaign_id: int, question_id: int):
    db = get_db()
    campaign = campaigns.get_campaign(db, current_user, campaign_id)
    stored = campaigns.get_question(db, current_user, campaign_id, question_id)
    errors, conflict, status, typed = {}, None, 200, dict(stored, version=campaign["version"])
    if request.method == "POST":
        typed = dict(_typed_question(), version=request.form.get("version", ""))
        try:
            if request.form.get("action") == "delete":
                campaigns.delete_question(db, current_user, campaign_id, question_id,
                                          version=typed["version"])
                flash("問題を削除しました。", "success")
            else:
                campaigns.update_question(db, current_user, campaign_id, question_id,
                                          **{k: v for k, v in typed.items()})
                flash("問題を保存しました。", "success")
        except Invalid as error:
            errors, status = error.errors, 422
        except Conflict:
            conflict, status = CONFLICT_MESSAGE, 409
        else:
            return redirect(url_for("campaigns.show", campaign_id=campaign_id) + "#questions")
    suggestions = campaigns.suggest_cases(db, search.get_index(current_app.config["DATA_DIR"]),
                                          current_user, campaign_id, question_id)
    return render_template("campaigns/question.html", campaign=campaign, stored=stored,
                           typed=typed, errors=errors, conflict=conflict,
                           suggestions=suggestions), status


@bp.route("/<int:campaign_id>/open", methods=["POST"])
def open_(campaign_id: int):
    return _act(campaign_id, lambda: campaigns.open_campaign(
        get_db(), current_user, campaign_id, version=request.form.get("version", "")),
        _opened)


def _opened(invited: int | None) -> str:
    if invited is None:  # opened before its opening time: the invitations wait for it
        return ("自己点検を開始しました。問題はこれ以降変更できません。案内メールは開始日時になったら送ります"
                "（回答も開始日時から受け付けます）。")
    return f"自己点検を開始しました（案内メール{invited}通を送信待ちにしました）。問題はこれ以降変更できません。"


@bp.route("/<int:campaign_id>/close", methods=["POST"])
def close(campaign_id: int):
    return _act(campaign_id, lambda: campaigns.close_campaign(
        get_db(), current_user, campaign_id, version=request.form.get("version", "")),
        "自己点検を締め切りました。対象者と集計はこの時点で確定しました。")


@bp.route("/<int:campaign_id>/results.csv")
def results_csv(campaign_id: int):
    data = participation.results_csv(get_db(), current_user, campaign_id)
    return Response(data, mimetype="text/csv", headers={
        "Content-Disposition": f"attachment; filename=selfcheck-{campaign_id}-results.csv"})
