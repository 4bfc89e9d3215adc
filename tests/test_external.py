"""Reviewers handle cases of other municipalities in the browser-facing pages."""

import io
import re

from kb.db import get_db
from tests.conftest import csrf_token
from tests.test_imports import CSV_JAPANESE


def upload(client, data: bytes, name="cases.csv"):
    token = csrf_token(client.get("/external/import").get_data(as_text=True))
    return client.post("/external/import", data={"csrf_token": token, "file": (io.BytesIO(data), name)},
                       content_type="multipart/form-data")


def page_version(html: str) -> str:
    """The version carried by the page's withdraw or restore form."""
    form = re.search(r'action="/external/\d+/(?:withdraw|restore)".*?</form>', html, re.S).group(0)
    return re.search(r'name="version" value="(\d+)"', form).group(1)


def count(app, sql="SELECT count(*) FROM cases"):
    with app.app_context():
        return get_db().execute(sql).fetchone()[0]


def test_only_reviewers_import(client, signed_in):
    signed_in("staff")
    assert client.get("/external/import").status_code == 403


def test_upload_previews_then_commit_imports_and_search_finds_it(client, signed_in, app):
    signed_in("reviewer", department="soumu-gyousei-joho")
    before = count(app)
    html = upload(client, CSV_JAPANESE.encode("cp932")).get_data(as_text=True)
    assert "新規 2件・更新 0件・変更なし 0件" in html
    assert "介護認定の通知を別人に郵送" in html
    assert count(app) == before  # a preview writes nothing
    token = re.search(r'name="token" value="([0-9a-f]+)"', html).group(1)
    response = client.post("/external/import/commit", data={
        "csrf_token": csrf_token(html), "token": token, "filename": "cases.csv",
        "preview": re.search(r'name="preview" value="([^"]*)"', html).group(1)})
    assert "取り込みました：新規 2件" in response.get_data(as_text=True)
    assert count(app) == before + 2
    results = client.get("/cases?q=介護認定 別人 郵送").get_data(as_text=True)
    assert "介護認定の通知を別人に郵送" in results
    again = upload(client, CSV_JAPANESE.encode("cp932")).get_data(as_text=True)
    assert "変更はありません" in again


def test_a_broken_upload_shows_each_problem_and_writes_nothing(client, signed_in, app):
    signed_in("reviewer", department="soumu-gyousei-joho")
    before = count(app)
    broken = CSV_JAPANESE.replace("2025/6/3", "2025/2/30").replace("FAX誤送信", "うわさ")
    response = upload(client, broken.encode("cp932"))
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    # Lines as an editor shows them: the first record's cells span lines 2 to 4.
    assert "2行目 発生日" in html and "5行目 種別" in html
    assert count(app) == before


def test_an_upload_over_the_limit_gets_a_japanese_413(client, signed_in):
    signed_in("reviewer", department="soumu-gyousei-joho")
    response = upload(client, b"x" * (21 * 2**20))
    assert response.status_code == 413
    assert "ファイルが大きすぎます" in response.get_data(as_text=True)


def test_reviewer_edits_withdraws_and_restores_an_external_case(client, signed_in, app):
    signed_in("reviewer", department="soumu-gyousei-joho")
    with app.app_context():
        case_id = get_db().execute("SELECT case_id FROM cases WHERE external_id = 'ext-0001'").fetchone()[0]
    form = client.get(f"/external/{case_id}/edit").get_data(as_text=True)
    fields = dict(re.findall(r'name="(\w+)" value="([^"]*)"', form))
    fields.update({"csrf_token": csrf_token(form), "title": "件名を訂正した", "occurred_on": "2024-13-01",
                   "incident_type": "email_missend", "summary": "概要", "municipality": "鹿嶋市"})
    response = client.post(f"/external/{case_id}/edit", data=fields)
    assert response.status_code == 422 and "存在する日付" in response.get_data(as_text=True)
    assert 'value="件名を訂正した"' in response.get_data(as_text=True)
    fields["occurred_on"] = "2024-12-05"
    assert client.post(f"/external/{case_id}/edit", data=fields).status_code == 302
    assert "件名を訂正した" in client.get(f"/cases/{case_id}").get_data(as_text=True)

    page = client.get(f"/cases/{case_id}").get_data(as_text=True)
    token, version = csrf_token(page), page_version(page)
    client.post(f"/external/{case_id}/withdraw", data={"csrf_token": token, "reason": "", "version": version})
    assert count(app, f"SELECT count(*) FROM cases WHERE case_id = {case_id} AND status = 'withdrawn'") == 0
    client.post(f"/external/{case_id}/withdraw", data={"csrf_token": token, "reason": "出典が削除された",
                                                       "version": version})
    assert "件名を訂正した" not in client.get("/cases?q=件名を訂正").get_data(as_text=True)
    page = client.get(f"/cases/{case_id}").get_data(as_text=True)
    assert "取り下げられています" in page
    client.post(f"/external/{case_id}/restore", data={"csrf_token": token, "version": page_version(page)})
    assert "件名を訂正した" in client.get("/cases?q=件名を訂正").get_data(as_text=True)


def test_staff_cannot_see_a_withdrawn_case(client, signed_in, make_user, app):
    from kb import imports
    with app.app_context():
        db = get_db()
        case_id = db.execute("SELECT case_id FROM cases WHERE external_id = 'ext-0001'").fetchone()[0]
        reviewer = make_user("checker", "reviewer", department="soumu-gyousei-joho")
        version = db.execute("SELECT version FROM cases WHERE case_id = ?", [case_id]).fetchone()[0]
        imports.set_external_status(db, reviewer, case_id, withdrawn=True, version=version, reason="誤り")
    signed_in("staff")
    assert client.get(f"/cases/{case_id}").status_code == 404


def external_case(app, external_id="ext-0001"):
    with app.app_context():
        return get_db().execute_returning_dicts(
            "SELECT case_id, title, status, version FROM cases WHERE external_id = ?", [external_id])[0]


def edit_form(client, case_id):
    form = client.get(f"/external/{case_id}/edit").get_data(as_text=True)
    fields = dict(re.findall(r'name="(\w+)" value="([^"]*)"', form))
    fields.update({"csrf_token": csrf_token(form), "incident_type": "email_missend", "summary": "概要"})
    return fields


def test_an_edit_form_opened_before_a_newer_save_gets_409_and_keeps_what_was_typed(client, signed_in, app):
    signed_in("reviewer", department="soumu-gyousei-joho")
    case_id = external_case(app)["case_id"]
    older, newer = edit_form(client, case_id), edit_form(client, case_id)
    assert older["version"] == newer["version"]
    newer["title"] = "新しい訂正"
    assert client.post(f"/external/{case_id}/edit", data=newer).status_code == 302
    older["title"] = "古い画面からの訂正"
    response = client.post(f"/external/{case_id}/edit", data=older)
    html = response.get_data(as_text=True)
    assert response.status_code == 409
    assert "別の人が保存しています" in html and 'value="古い画面からの訂正"' in html
    assert external_case(app)["title"] == "新しい訂正"  # the newer fix is not undone
    # The page still carries the version it was opened at: saving it again is refused too.
    assert client.post(f"/external/{case_id}/edit", data=older).status_code == 409
    assert client.post(f"/external/{case_id}/edit", data=edit_form(client, case_id)).status_code == 302


def test_an_edit_without_a_version_is_refused(client, signed_in, app):
    signed_in("reviewer", department="soumu-gyousei-joho")
    case = external_case(app)
    fields = edit_form(client, case["case_id"])
    del fields["version"]
    assert client.post(f"/external/{case['case_id']}/edit", data=fields).status_code == 409
    assert external_case(app) == case


def test_a_stale_withdraw_gets_409_keeps_the_reason_and_changes_nothing(client, signed_in, app):
    signed_in("reviewer", department="soumu-gyousei-joho")
    case_id = external_case(app)["case_id"]
    stale = client.get(f"/cases/{case_id}").get_data(as_text=True)
    assert client.post(f"/external/{case_id}/edit", data=edit_form(client, case_id)).status_code == 302
    before = external_case(app)
    response = client.post(f"/external/{case_id}/withdraw", data={
        "csrf_token": csrf_token(stale), "version": page_version(stale), "reason": "出典が削除された"})
    html = response.get_data(as_text=True)
    assert response.status_code == 409
    assert "別の人が変更しています" in html and 'value="出典が削除された"' in html
    assert external_case(app) == before
    # The page now shows the case as it is, and its form the current version.
    response = client.post(f"/external/{case_id}/withdraw", data={
        "csrf_token": csrf_token(html), "version": page_version(html), "reason": "出典が削除された"})
    assert response.status_code == 302 and external_case(app)["status"] == "withdrawn"


def test_a_stale_restore_gets_409_and_changes_nothing(client, signed_in, app):
    signed_in("reviewer", department="soumu-gyousei-joho")
    case_id = external_case(app)["case_id"]
    page = client.get(f"/cases/{case_id}").get_data(as_text=True)
    client.post(f"/external/{case_id}/withdraw", data={
        "csrf_token": csrf_token(page), "version": page_version(page), "reason": "誤り"})
    stale = client.get(f"/cases/{case_id}").get_data(as_text=True)
    client.post(f"/external/{case_id}/restore", data={"csrf_token": csrf_token(stale), "version": page_version(stale)})
    page = client.get(f"/cases/{case_id}").get_data(as_text=True)
    client.post(f"/external/{case_id}/withdraw", data={
        "csrf_token": csrf_token(page), "version": page_version(page), "reason": "やはり誤り"})
    before = external_case(app)
    response = client.post(f"/external/{case_id}/restore", data={
        "csrf_token": csrf_token(stale), "version": page_version(stale)})
    assert response.status_code == 409 and external_case(app) == before


def test_links_a_file_or_an_edit_would_drop_are_shown_before_and_after(client, signed_in, app):
    import json

    from kb import checklist
    from tests.test_imports import RECORD

    reviewer = signed_in("reviewer", department="soumu-gyousei-joho")

    def upload_and_commit(data):
        html = upload(client, data, "cases.jsonl").get_data(as_text=True)
        return client.post("/external/import/commit", data={
            "csrf_token": csrf_token(html), "filename": "cases.jsonl",
            "token": re.search(r'name="token" value="([0-9a-f]+)"', html).group(1),
            "preview": re.search(r'name="preview" value="([^"]*)"', html).group(1)})

    upload_and_commit(json.dumps(RECORD, ensure_ascii=False).encode())
    with app.app_context():
        db = get_db()
        case_id, machine = db.execute(
            "SELECT case_id, countermeasure_id FROM countermeasures WHERE text = '封入封緘機を使う。'").fetchone()
        checklist.set_countermeasure_items(db, reviewer, machine, ["1-1"])
    dropped = json.dumps(dict(RECORD, countermeasures=["封入時に二人で照合する。"]), ensure_ascii=False).encode()
    preview = upload(client, dropped, "cases.jsonl").get_data(as_text=True)
    assert "外れるチェックリストの関連付け（1件）" in preview
    assert "再発防止策「封入封緘機を使う。」（項目 1-1）" in preview
    done = upload_and_commit(dropped).get_data(as_text=True)
    assert "外れたチェックリストの関連付け（1件）" in done and "封入封緘機を使う。" in done

    with app.app_context():
        checklist.set_countermeasure_items(get_db(), reviewer, get_db().execute(
            "SELECT countermeasure_id FROM countermeasures WHERE case_id = ?", [case_id]).fetchone()[0], ["1-2"])
    fields = edit_form(client, case_id)
    fields["countermeasures"] = "宛名を読み合わせる。"
    response = client.post(f"/external/{case_id}/edit", data=fields, follow_redirects=True)
    assert "再発防止策「封入時に二人で照合する。」がなくなったため、チェックリスト項目 1-2 との関連付けが外れました" in \
        response.get_data(as_text=True)


def test_an_import_previewed_before_an_edit_is_refused_and_previewed_again(client, signed_in, app):
    """The preview is what the reviewer agreed to: an edit saved after it (here a summary
    correction) must not be undone by 「取り込む」 on the older preview."""
    import json

    from tests.test_imports import RECORD

    signed_in("reviewer", department="soumu-gyousei-joho")
    first = upload(client, json.dumps(RECORD, ensure_ascii=False).encode(), "cases.jsonl")
    html = first.get_data(as_text=True)
    client.post("/external/import/commit", data={
        "csrf_token": csrf_token(html), "filename": "cases.jsonl",
        "token": re.search(r'name="token" value="([0-9a-f]+)"', html).group(1),
        "preview": re.search(r'name="preview" value="([^"]*)"', html).group(1)})
    case = external_case(app, RECORD["id"])
    retitled = json.dumps(dict(RECORD, title="ファイルでの件名の訂正"), ensure_ascii=False).encode()
    preview = upload(client, retitled, "cases.jsonl").get_data(as_text=True)
    assert "更新（件名）" in preview
    fields = edit_form(client, case["case_id"])
    fields["summary"] = "編集画面での概要の訂正"
    assert client.post(f"/external/{case['case_id']}/edit", data=fields).status_code == 302
    response = client.post("/external/import/commit", data={
        "csrf_token": csrf_token(preview), "filename": "cases.jsonl",
        "token": re.search(r'name="token" value="([0-9a-f]+)"', preview).group(1),
        "preview": re.search(r'name="preview" value="([^"]*)"', preview).group(1)})
    again = response.get_data(as_text=True)
    assert response.status_code == 409
    assert "取り込みませんでした" in again
    assert "概要" in re.search(r"<td>更新（([^<]*)）</td>", again).group(1)  # now shown
    with app.app_context():
        stored = get_db().execute("SELECT title, summary FROM cases WHERE case_id = ?",
                                  [case["case_id"]]).fetchone()
    assert tuple(stored) == (case["title"], "編集画面での概要の訂正")
    # The new preview can be committed: now the reviewer has seen what it undoes.
    response = client.post("/external/import/commit", data={
        "csrf_token": csrf_token(again), "filename": "cases.jsonl",
        "token": re.search(r'name="token" value="([0-9a-f]+)"', again).group(1),
        "preview": re.search(r'name="preview" value="([^"]*)"', again).group(1)})
    assert "取り込みました：新規 0件、更新 1件" in response.get_data(as_text=True)
