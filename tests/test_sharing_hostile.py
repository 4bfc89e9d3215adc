"""Issue #15 attacked as a hostile and a careless user: the export file and its path, the
round trip through CSV, the 公表 URL and how source links are shown, the date fields on a
phone, and a demo loaded into an installation in use."""

import re

import pytest
from werkzeug.datastructures import MultiDict

from kb import imports, rendering, reports
from kb.db import get_db
from tests.conftest import add_user, csrf_token, login
from tests.reporting import form_version, incident_form
from tests.test_sharing import export, file_case, read_jsonl

# people, office_app and out_dir are test_sharing's fixtures.
from tests.test_sharing import office_app, out_dir, people  # noqa: F401


# --- the export file ---------------------------------------------------------------------------

def test_an_export_path_the_system_refuses_gives_a_japanese_message_not_a_traceback(
        office_app, people, out_dir):
    file_case(office_app, people)
    too_long = out_dir / ("共有" * 60 + ".jsonl")  # 366 bytes: longer than a file name may be
    result = export(office_app, too_long)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)  # no traceback
    assert "書き出せません" in result.output and "ファイルは作っていません" in result.output
    assert list(out_dir.iterdir()) == []
    with office_app.app_context():
        assert get_db().execute("SELECT count(*) FROM audit_log WHERE action = 'cases_export'"
                                ).fetchone()[0] == 0


def test_text_that_really_starts_with_a_quote_survives_the_csv_round_trip(office_app, people, out_dir):
    # 「'=SUM(」 is what was typed (a spreadsheet's text marker left in a cell, quoted in the
    # lesson): the importer takes a guard quote off 「'=…」, so the export must add one.
    lesson = "'=SUM( のような式の残ったシートは送る前に値に変える。"
    summary = "'- 付きの行が表に残ったまま送付した。"
    case_id = file_case(office_app, people, lesson=lesson, summary=summary)
    out = out_dir / "shared.csv"
    assert export(office_app, out).exit_code == 0, export(office_app, out).output
    (_, raw), = imports.read_records(out.read_bytes(), "shared.csv")
    clean, errors = imports.check_record(raw)
    assert errors == {}
    assert clean["id"] == f"13101-{case_id:06d}"
    assert clean["lesson"] == lesson and clean["summary"] == summary
    # and the JSON Lines of the same case says the same
    jsonl = out_dir / "shared.jsonl"
    assert export(office_app, jsonl).exit_code == 0
    assert read_jsonl(jsonl)[clean["id"]]["lesson"] == lesson


# --- the 公表 URL and source links --------------------------------------------------------------

def test_a_disclosure_url_with_a_hidden_direction_override_is_refused_beside_the_field(
        office_app, people):
    case_id = file_case(office_app, people, disclosure=None)
    client = office_app.test_client()
    login(client, "reviewer")
    action = f"/reports/{case_id}/statutory"
    page = client.get(f"/cases/{case_id}").get_data(as_text=True)
    fields = {"csrf_token": csrf_token(page), "version": form_version(page, action),
              "prelim_reported_on": "", "final_reported_on": "", "disclosure": "individual",
              "disclosure_reason": "", "disclosed_on": "2026-10-20"}
    for url in ("https://www.city.example.lg.jp/\u202elmth.exe",   # shows as …exe.html
                "https://www.city.example.lg.jp/a\u200bb.html",    # zero-width space
                "https://www.city.example.lg.jp/a\x7fb.html",
                "https://www.city.example.lg.jp@evil.example/kisha.html"):  # goes to evil.example
        refused = client.post(action, data={**fields, "disclosure_url": url})
        assert refused.status_code == 422, url
        assert 'id="disclosure_url-errors"' in refused.get_data(as_text=True)
    with office_app.app_context():
        assert get_db().execute("SELECT disclosure_url FROM cases WHERE case_id = ?",
                                [case_id]).fetchone()[0] is None


@pytest.mark.parametrize("url, shown", [
    # whole-script Cyrillic look-alike of apple.com, and a mixed Latin/Cyrillic one
    ("https://xn--80ak6aa92e.com/", "https://xn--80ak6aa92e.com/"),
    ("https://xn--pple-43d.com/%E5%80%8B", "https://xn--pple-43d.com/個"),
    # a Japanese host name is shown in Japanese
    ("https://xn--eckwd4c7c.xn--zckzah/", "https://ドメイン.テスト/"),
    ("https://www.xn--wgv71a.jp/%E5%80%8B", "https://www.日本.jp/個"),
])
def test_readable_url_shows_only_japanese_host_names_decoded(url, shown):
    assert rendering.readable_url(url) == shown


def test_readable_url_never_shows_a_raw_direction_override_or_invisible_character():
    shown = rendering.readable_url("https://example.jp/\u202egnp.exe\u200b%E5%80%8B")
    assert "\u202e" not in shown and "\u200b" not in shown
    assert shown == "https://example.jp/%E2%80%AEgnp.exe%E2%80%8B個"


# --- date fields on a phone ---------------------------------------------------------------------

def test_a_date_and_time_field_does_not_ask_for_a_digits_only_keyboard(client, signed_in):
    # A phone's numeric keypad has no 「/」「:」 or blank: 2026/12/01 09:00 cannot be typed there,
    # and parse_moment needs them.
    signed_in("reviewer")
    html = client.get("/campaigns/new").get_data(as_text=True)
    for name in ("opens_at", "closes_at"):
        tag = re.search(r'<input[^>]*name="' + name + r'"[^>]*>', html)[0]
        assert 'inputmode="numeric"' not in tag
    # a day alone can be typed as digits, so the day fields keep the numeric keypad
    page = client.get("/reports/new/incident").get_data(as_text=True)
    tag = re.search(r'<input[^>]*name="discovered_on"[^>]*>', page)[0]
    assert 'inputmode="numeric"' in tag


# --- a demo loaded by mistake -------------------------------------------------------------------

def real_roster(tmp_path):
    rows = ["職員番号,氏名,氏名カナ,所属,役職,在籍区分,区分開始日,区分終了日,メールアドレス",
            "100001,戸籍　一郎,コセキ イチロウ,kumin-koseki,課長,,,,koseki.ichiro@city.example.jp",
            "100002,住民　花子,ジュウミン ハナコ,kumin-koseki,主事,,,,jumin.hanako@city.example.jp"]
    path = tmp_path / "roster.csv"
    path.write_bytes(("\r\n".join(rows) + "\r\n").encode("cp932"))
    return path


def test_init_demo_refuses_an_installation_in_use_and_mails_no_one(app, tmp_path):
    runner = app.test_cli_runner()
    assert runner.invoke(args=["import-staff", str(real_roster(tmp_path))]).exit_code == 0
    result = runner.invoke(args=["init", "--demo"])
    assert result.exit_code == 1
    assert "デモのデータは作りませんでした" in result.output and "職員名簿" in result.output
    with app.app_context():
        db = get_db()
        assert db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
        assert db.execute("SELECT count(*) FROM users WHERE login LIKE 'demo-%'"
                          " OR email LIKE '%@ward.invalid'").fetchone()[0] == 0
        assert db.execute("SELECT count(*) FROM cases WHERE title LIKE '【デモ】%'"
                          ).fetchone()[0] == 0
        assert db.execute("SELECT count(*) FROM campaigns").fetchone()[0] == 0


def test_init_demo_refuses_when_real_reports_exist(app):
    staff = add_user(app, "real-staff", "staff")
    with app.app_context():
        db = get_db()
        reports.save_report(db, staff, reports.report_from_form(MultiDict(incident_form()), "incident"))
    result = app.test_cli_runner().invoke(args=["init", "--demo"])
    assert result.exit_code == 1 and "報告" in result.output
    with app.app_context():
        assert get_db().execute("SELECT count(*) FROM cases WHERE title LIKE '【デモ】%'"
                                ).fetchone()[0] == 0
