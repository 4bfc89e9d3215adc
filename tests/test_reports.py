"""Filing reports through the Flask client: the forms, drafts, validation and conflicts."""

import re

import pytest

from kb import reports
from kb.db import get_db
from tests.conftest import login
from tests.reporting import file_report, incident_form, near_miss_form, post_report


def case_row(app, case_id):
    with app.app_context():
        return get_db().execute_returning_dicts("SELECT * FROM cases WHERE case_id = ?", [case_id])[0]


def count_cases(app):
    with app.app_context():
        return get_db()["cases"].count


def test_near_miss_form_has_few_fields_with_real_labels(client, signed_in):
    signed_in("staff")
    html = client.get("/reports/new/near_miss").get_data(as_text=True)
    for label in ("何が起きそうになったか", "どうして気づいたか", "そのときの作業", "起こりえたこと",
                  "防ぐためのアイデア", "件名", "匿名で報告する"):
        assert label in html
    fields = set(re.findall(r'<(?:input|textarea|select)[^>]*name="([^"]+)"', html))
    fields -= {"csrf_token", "version", "countermeasure_rows", "action"}
    assert len(fields) <= 10, fields  # 3 required; the rest (the day too) optional


def test_staff_files_a_near_miss_and_sees_it_under_my_reports(client, signed_in, app):
    signed_in("staff")
    case_id = file_report(client, "near_miss", submit=True)
    row = case_row(app, case_id)
    assert (row["kind"], row["origin"], row["status"]) == ("near_miss", "internal", "submitted")
    assert row["title"] == "FAXの短縮ダイヤルが別の事業所の番号に登録されていた。"
    html = client.get("/reports/mine").get_data(as_text=True)
    assert "FAXの短縮ダイヤルが別の事業所の番号に登録されていた。" in html
    assert "提出済み" in html


def test_a_near_miss_may_say_the_day_it_nearly_happened_and_never_a_future_one(client, signed_in, app):
    signed_in("staff")
    html = client.get("/reports/new/near_miss").get_data(as_text=True)
    assert '<label for="occurred_on">起きそうになった日（分かれば）</label>' in html
    future = post_report(client, "/reports/new/near_miss", near_miss_form(occurred_on="2099/01/05"),
                         action="submit")
    html = future.get_data(as_text=True)
    assert future.status_code == 422 and "未来の日付は入力できません。" in html
    assert 'value="2099/01/05"' in html and "FAXの短縮ダイヤルが別の事業所" in html  # kept as typed
    case_id = file_report(client, "near_miss", near_miss_form(occurred_on="令和8年11月20日"))
    assert case_row(app, case_id)["occurred_on"] == "2026-11-20"
    assert case_row(app, file_report(client, "near_miss"))["occurred_on"] is None  # optional
    page = client.get(f"/cases/{case_id}").get_data(as_text=True)
    assert "<dt>起きそうになった日</dt><dd>2026年11月20日" in page and "<dt>発見日</dt>" not in page


def test_near_miss_submit_requires_the_three_fields(client, signed_in, app):
    signed_in("staff")
    response = post_report(client, "/reports/new/near_miss", {"summary": "", "how_found": "", "task": ""},
                           action="submit")
    # An empty draft is kept, and each required field gets its message.
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "何が起きそうになったかを入力してください。" in html
    assert "どうして気づいたかを入力してください。" in html
    assert "作業を入力してください。" in html
    assert "下書きは保存しました" in html


def test_incident_is_saved_with_every_template_section(client, signed_in, app):
    user = signed_in("staff")
    case_id = file_report(client, "incident")
    row = case_row(app, case_id)
    assert row["status"] == "draft" and row["reporter_id"] == user.user_id
    assert row["affected_count"] == 2
    assert row["data_items"] == '["氏名", "住所", "保険料額"]'
    assert row["factors"] == '["man", "media"]'
    assert row["whys"].startswith('["2人分の通知が重なって1通に見えた。"')
    with app.app_context():
        report = reports.report_from_case(get_db(), case_id)
    assert report["countermeasures"][0]["item_codes"] == ["4-1", "4-2"]
    assert report["countermeasures"][0]["type"] == "mechanism"


@pytest.mark.parametrize("change, field, message", [
    ({"occurred_on": "2026-02-30"}, "occurred_on", "存在しない日付です"),
    ({"occurred_on": "2999-01-01"}, "occurred_on", "未来の日付は入力できません"),
    ({"occurred_on": "2026-10-05", "discovered_on": "2026-10-01"}, "discovered_on", "発見日が発生日より前"),
    ({"affected_count": "-3"}, "affected_count", "0以上の整数"),
    ({"affected_count": "たくさん"}, "affected_count", "0以上の整数"),
    ({"title": "長" * 121}, "title", "120文字以内"),
    ({"summary": "あ" * 4001}, "summary", "4,000文字以内"),
    ({"task": "teleport"}, "task", "一覧から選んで"),
    ({"incident_type": "rumour"}, "incident_type", "一覧から選んで"),
    ({"countermeasures-0-item_codes": "99-9"}, "countermeasures-0-item_codes", "チェックリストにない項目コード"),
    ({"checklist_items": ["3-2", "0-0"]}, "checklist_items", "チェックリストにない項目コードです：0-0"),
    ({"countermeasures-0-text": ""}, "countermeasures-0-text", "対策の内容を入力してください"),
    ({"countermeasures-0-due_on": "2027-13-01"}, "countermeasures-0-due_on", "存在しない日付"),
])
def test_bad_input_is_refused_beside_the_field_and_typed_values_are_kept(
        client, signed_in, app, change, field, message):
    signed_in("staff")
    before = count_cases(app)
    form = incident_form(**change)
    response = post_report(client, "/reports/new/incident", form)
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert f'id="{field}-errors"' in html
    errors = re.search(rf'id="{field}-errors">(.*?)</ul>', html, re.S).group(1)
    assert message in errors
    assert "通知書の封入誤りにより別人の通知を送付" in html or "長" * 121 in html
    assert "封入封緘機の重量チェック" in html or change.get("countermeasures-0-text") == ""
    assert count_cases(app) == before


def test_incident_submit_requires_root_cause_and_a_countermeasure(client, signed_in):
    signed_in("staff")
    form = incident_form(root_cause="", countermeasure_rows="0")
    response = post_report(client, "/reports/new/incident", form, action="submit")
    html = response.get_data(as_text=True)
    assert "根本原因を入力してください。" in html
    assert "再発防止策を一つ以上入力してください。" in html


def test_vague_root_cause_warns_but_does_not_block(client, signed_in, app):
    signed_in("staff")
    case_id = file_report(client, "incident", incident_form(root_cause="職員の確認不足。"))
    html = client.get(f"/reports/{case_id}/edit").get_data(as_text=True)
    assert "「注意不足」「確認不足」だけでは" in html
    assert case_row(app, case_id)["root_cause"] == "職員の確認不足。"


@pytest.mark.parametrize("text, vague", [
    ("確認不足", True), ("職員の注意不足による。", True), ("今後は気をつける", True),
    ("うっかりミス", True), ("", False),
    ("封入物の照合が目視だけで、枚数を確かめる手順がなかった", False),
    ("確認不足を招いた、宛先を二人で読み合わせる手順の欠如", False),
])
def test_vague_root_causes_are_recognised(text, vague):
    assert reports.is_vague_root_cause(text) is vague


def test_personal_data_is_flagged_beside_its_field_and_masked_in_one_click(client, signed_in, app):
    signed_in("staff")
    form = near_miss_form(how_found="山田太郎様から03-1234-5678に電話があり気づいた。")
    case_id = file_report(client, "near_miss", form)
    html = client.get(f"/reports/{case_id}/edit").get_data(as_text=True)
    assert 'id="how_found-pii"' in html
    assert "<mark>03-1234-5678</mark>" in html
    version = re.search(r'name="version" value="(\d+)"', html).group(1)
    button = re.search(r'<mark>03-1234-5678</mark>.*?value="(mask\|how_found\|\d+\|\d+)"', html, re.S)
    response = post_report(client, f"/reports/{case_id}/edit", dict(form, version=version),
                           action=button.group(1))
    assert response.status_code == 200
    assert case_row(app, case_id)["how_found"] == "山田太郎様から＊＊＊に電話があり気づいた。"


def test_submit_with_personal_data_asks_first_then_accepts_acknowledgement(client, signed_in, app):
    signed_in("staff")
    form = near_miss_form(summary="鈴木様の通知をFAXで送るところだった。")
    case_id = file_report(client, "near_miss", form)
    version = str(case_row(app, case_id)["version"])
    response = post_report(client, f"/reports/{case_id}/edit", dict(form, version=version),
                           action="submit")
    assert response.status_code == 422
    assert "個人情報らしき記載があります" in response.get_data(as_text=True)
    assert case_row(app, case_id)["status"] == "draft"
    version = str(case_row(app, case_id)["version"])
    response = post_report(client, f"/reports/{case_id}/edit", dict(form, version=version),
                           action="submit", pii_acknowledged="1")
    assert response.status_code == 302
    assert case_row(app, case_id)["status"] == "submitted"


def test_a_stale_save_does_not_overwrite_a_newer_one(client, signed_in, app):
    signed_in("staff")
    form = near_miss_form()
    case_id = file_report(client, "near_miss", form)
    assert post_report(client, f"/reports/{case_id}/edit",
                       dict(form, version="1", summary="一つ目の画面で直した。")).status_code == 302
    response = post_report(client, f"/reports/{case_id}/edit",
                           dict(form, version="1", summary="二つ目の画面で直した。"))
    html = response.get_data(as_text=True)
    assert response.status_code == 409
    assert "別の画面か別の人が先に保存しています" in html
    assert "二つ目の画面で直した。" in html  # what this person typed is still on screen
    assert case_row(app, case_id)["summary"] == "一つ目の画面で直した。"


def test_editing_someone_elses_draft_is_404_and_changes_nothing(client, signed_in, make_user, app):
    owner = make_user("owner", "staff")
    login(client, "owner")
    case_id = file_report(client, "near_miss")
    client.post("/logout", data={"csrf_token": re.search(
        r'name="csrf_token" value="([^"]+)"', client.get("/").get_data(as_text=True)).group(1)})
    signed_in("staff", login_id="intruder")
    # 404, not 403: the answer must not tell that someone's draft exists.
    assert client.get(f"/reports/{case_id}/edit").status_code == 404
    response = post_report(client, f"/reports/{case_id}/edit",
                           near_miss_form(summary="書き換え", version="1"))
    assert response.status_code == 404
    assert case_row(app, case_id)["summary"] != "書き換え"
    assert owner.user_id == case_row(app, case_id)["reporter_id"]


def test_countermeasure_rows_can_be_added_and_removed(client, signed_in, app):
    signed_in("staff")
    form = incident_form()
    case_id = file_report(client, "incident", form)
    html = post_report(client, f"/reports/{case_id}/edit", dict(form, version="1"),
                       action="add_row").get_data(as_text=True)
    assert 'name="countermeasures-1-text"' in html
    form2 = incident_form(countermeasure_rows="2", **{"countermeasures-1-text": "封入作業を二人一組にする。"})
    post_report(client, f"/reports/{case_id}/edit", dict(form2, version="2"))
    with app.app_context():
        assert [c["text"] for c in reports.report_from_case(get_db(), case_id)["countermeasures"]] == \
            ["封入封緘機の重量チェックで枚数違いを止める。", "封入作業を二人一組にする。"]
    post_report(client, f"/reports/{case_id}/edit", dict(form2, version="3"), action="remove_row|0")
    with app.app_context():
        assert [c["text"] for c in reports.report_from_case(get_db(), case_id)["countermeasures"]] == \
            ["封入作業を二人一組にする。"]


def test_statutory_clock_shows_on_the_form_for_a_reportable_incident(client, signed_in):
    signed_in("staff")
    case_id = file_report(client, "incident", incident_form(affected_count="250", sensitive_data="1"))
    html = client.get(f"/reports/{case_id}/edit").get_data(as_text=True)
    assert "報告対象事態にあたります" in html
    assert "本人の数が100人を超える（250人）" in html
    assert "要配慮個人情報が含まれる" in html
    assert "2026年10月8日" in html  # 速報: discovered 2026-10-03 + 5 days
    assert "2026年11月2日" in html  # 確報: + 30 days


def test_reviewer_only_account_files_a_near_miss_like_every_account(client, signed_in, app):
    # Roles add powers and take none away (issue #12): a reviewer files as staff do.
    signed_in("reviewer", department="soumu-gyousei-joho")
    before = count_cases(app)
    assert post_report(client, "/reports/new/near_miss", near_miss_form()).status_code == 302
    assert count_cases(app) == before + 1
    assert "ヒヤリ・ハットを報告する" in client.get("/reports/new").get_data(as_text=True)


def test_opening_a_draft_is_an_audited_read(client, signed_in, app):
    signed_in("staff")
    case_id = file_report(client, "near_miss", near_miss_form(anonymous="1"))
    client.get(f"/reports/{case_id}/edit")
    with app.app_context():
        rows = get_db().execute("SELECT actor, user_id FROM audit_log WHERE case_id = ? AND action = 'case_read'",
                                [case_id]).fetchall()
    assert rows and all(row == ("（匿名の報告者）", None) for row in rows)
