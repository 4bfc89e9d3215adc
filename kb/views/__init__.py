"""Blueprints, the navigation and the Japanese error pages."""

from flask import render_template
from flask_wtf.csrf import CSRFError

from kb import exceptions
from kb.views import (admin, api, auth, campaigns, cases, checklist, dashboard, external, home,
                      reports, selfcheck, slips, staff, workshops)
from kb.views import department_checks, outbox, participation
from kb.views import querylog
from kb.views import vocabulary
from kb.views import sharing

# The main navigation, in the order the design names it: (endpoint, text, the roles
# that see it or None for everyone). The views check the roles again.
NAVIGATION = (
    ("home.index", "これからの作業", None),
    ("cases.index", "事例検索", None),
    ("reports.new", "報告する", None),
    ("checklist.index", "チェックリスト", None),
    ("workshops.index", "研修", ("trainer",)),
    ("dashboard.index", "集計", ("manager", "reviewer", "admin")),
    ("admin.users", "管理", ("admin",)),
    ("staff.index", "職員名簿", ("admin", "manager")),
    ("campaigns.index", "自己点検", ("reviewer",)),
    ("department_checks.index", "自己点検（所属）", ("manager",)),
    ("participation.index", "自己点検の回答率", ("manager", "reviewer")),
    ("outbox.index", "メール", ("reviewer", "admin")),
    ("querylog.index", "検索ログ", ("reviewer",)),
    ("vocabulary.index", "言い換え", ("reviewer",)),
)

ERROR_TEXTS = {
    400: ("送信を受け付けられませんでした",
          "ページの有効期限が切れたか、正しくない送信です。前のページに戻って再読み込みし、"
          "もう一度操作してください。"),
    403: ("この操作は許可されていません", "この画面や操作を使う役割がありません。"
          "必要な場合は所属長か管理者に相談してください。"),
    404: ("ページが見つかりません", "お探しのページや事例は存在しないか、閲覧できる範囲にありません。"),
    405: ("この操作は受け付けられません", "画面のボタンから操作してください。"),
    413: ("ファイルが大きすぎます", "送信できるファイルは20MBまでです。ファイルを分けてから、もう一度お試しください。"),
    429: ("試行回数が多すぎます", "短時間に何度も試行されたため、一時的に受付を停止しています。"
          "しばらく待ってからもう一度お試しください。"),
    500: ("システムエラーが発生しました", "処理を完了できませんでした。入力した内容は保存されていない"
          "可能性があります。時間をおいてもう一度お試しいただき、続く場合は情報政策課へ連絡してください。"),
}


def render_error(status: int):
    title, message = ERROR_TEXTS[status]
    return render_template("error.html", status=status, title=title, message=message), status


def _my_workshops() -> list[dict]:
    """The signed-in trainer's workshops, for the 「研修に追加」 menus (asked for by templates)."""
    from flask_login import current_user

    from kb import workshops
    from kb.db import get_db

    return workshops.list_workshops(get_db(), current_user)["own"][:10]


def init_app(app) -> None:
    for module in (auth, home, cases, checklist, reports, external, workshops, dashboard,
                   admin, api, slips, staff, campaigns, selfcheck, outbox, participation, department_checks):
        app.register_blueprint(module.bp)
    app.register_blueprint(querylog.bp)
    app.register_blueprint(vocabulary.bp)
    app.register_blueprint(sharing.bp)

    app.jinja_env.globals["NAVIGATION"] = NAVIGATION
    app.jinja_env.globals["my_workshops"] = _my_workshops
    for status in ERROR_TEXTS:
        app.register_error_handler(status, lambda error, status=status: render_error(status))
    app.register_error_handler(CSRFError, lambda error: render_error(400))
    app.register_error_handler(exceptions.NotFound, lambda error: render_error(404))
    app.register_error_handler(exceptions.Forbidden, lambda error: render_error(403))
