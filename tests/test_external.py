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
        "csrf_token": csrf_token(html), "token": token, "filename": "cases.csv"})
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

    token = csrf_token(client.get(f"/cases/{case_id}").get_data(as_text=True))
    client.post(f"/external/{case_id}/withdraw", data={"csrf_token": token, "reason": ""})
    assert count(app, f"SELECT count(*) FROM cases WHERE case_id = {case_id} AND status = 'withdrawn'") == 0
    client.post(f"/external/{case_id}/withdraw", data={"csrf_token": token, "reason": "出典が削除された"})
    assert "件名を訂正した" not in client.get("/cases?q=件名を訂正").get_data(as_text=True)
    assert "取り下げられています" in client.get(f"/cases/{case_id}").get_data(as_text=True)
    client.post(f"/external/{case_id}/restore", data={"csrf_token": token})
    assert "件名を訂正した" in client.get("/cases?q=件名を訂正").get_data(as_text=True)


def test_staff_cannot_see_a_withdrawn_case(client, signed_in, make_user, app):
    from kb import imports
    with app.app_context():
        db = get_db()
        case_id = db.execute("SELECT case_id FROM cases WHERE external_id = 'ext-0001'").fetchone()[0]
        reviewer = make_user("checker", "reviewer", department="soumu-gyousei-joho")
        imports.set_external_status(db, reviewer, case_id, withdrawn=True, reason="誤り")
    signed_in("staff")
    assert client.get(f"/cases/{case_id}").status_code == 404
