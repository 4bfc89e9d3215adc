"""The review workflow through the Flask client: each role's allowed and refused steps."""

import re
from datetime import date

import pytest

from kb import audit, workflow
from kb.db import get_db
from tests.conftest import csrf_token, login
from tests.reporting import (file_report, form_version, incident_form, near_miss_form,
                             workflow_post)


def status_of(app, case_id):
    with app.app_context():
        return get_db().execute("SELECT status FROM cases WHERE case_id = ?", [case_id]).fetchone()[0]


def set_status(app, case_id, status):
    with app.app_context():
        get_db().execute("UPDATE cases SET status = ? WHERE case_id = ?", [status, case_id])


def switch(client, login_id):
    client.post("/logout", data={"csrf_token": csrf_token(client.get("/").get_data(as_text=True))})
    assert login(client, login_id.replace("_", "-")).status_code == 302


@pytest.fixture
def office(make_user):
    """A reporter, their manager, a manager elsewhere, a reviewer, a trainer and an admin."""
    return {
        "reporter": make_user("reporter", "staff"),
        "colleague": make_user("colleague", "staff"),
        "manager": make_user("manager", "manager"),
        "other_manager": make_user("other-manager", "manager", department="fukushi-kourei"),
        "reviewer": make_user("reviewer", "reviewer", department="soumu-gyousei-joho"),
        "trainer": make_user("trainer", "trainer", department="soumu-jinji"),
        "admin": make_user("admin", "admin", department="kikaku-johoseisaku"),
    }


def filed(client, kind="incident", status="submitted", form=None):
    login(client, "reporter")
    case_id = file_report(client, kind, form, submit=True)
    return case_id


# (step, status the case is in, who, allowed)
TRANSITIONS = [
    ("approve", "submitted", "manager", True),
    ("approve", "submitted", "other_manager", False),
    ("approve", "submitted", "reviewer", False),
    ("approve", "submitted", "reporter", False),
    ("approve", "submitted", "colleague", False),
    ("approve", "submitted", "admin", False),
    ("approve", "approved", "manager", False),
    ("return", "submitted", "manager", True),
    ("return", "submitted", "reviewer", True),
    ("return", "approved", "reviewer", True),
    ("return", "approved", "manager", False),
    ("return", "submitted", "other_manager", False),
    ("return", "submitted", "trainer", False),
    ("publish", "approved", "reviewer", True),
    ("publish", "submitted", "reviewer", False),
    ("publish", "approved", "manager", False),
    ("publish", "approved", "admin", False),
    ("publish", "approved", "reporter", False),
]


@pytest.mark.parametrize("step, status, who, allowed", TRANSITIONS)
def test_each_role_may_take_only_its_own_steps(client, office, app, step, status, who, allowed):
    case_id = filed(client)
    set_status(app, case_id, status)
    switch(client, who)
    response = workflow_post(client, case_id, step, comment="理由を書きました。")
    expected = {"approve": "approved", "return": "draft", "publish": "published"}[step]
    if allowed:
        assert response.status_code == 302
        assert status_of(app, case_id) == expected
    else:  # 404 where the report itself is out of reach, so a refusal does not reveal it
        assert response.status_code == (403 if who in ("reporter", "manager", "reviewer") else 404)
        assert status_of(app, case_id) == status


def test_incident_goes_through_the_whole_workflow(client, office, app):
    case_id = filed(client, "incident")
    switch(client, "manager")
    assert "承認待ち" in client.get("/reports/queue/submitted").get_data(as_text=True)
    assert workflow_post(client, case_id, "return", comment="直後の対応に日時を書いてください。").status_code == 302
    assert status_of(app, case_id) == "draft"

    switch(client, "reporter")
    mine = client.get("/reports/mine").get_data(as_text=True)
    assert "差し戻されました：直後の対応に日時を書いてください。" in mine
    edit = client.get(f"/reports/{case_id}/edit").get_data(as_text=True)
    version = re.search(r'name="version" value="(\d+)"', edit).group(1)
    token = csrf_token(edit)
    response = client.post(f"/reports/{case_id}/edit", data={
        "csrf_token": token, "action": "submit", "version": version,
        **incident_form(immediate_action="10月3日15時に訪問して回収した。")})
    assert response.status_code == 302
    assert status_of(app, case_id) == "submitted"

    switch(client, "manager")
    assert workflow_post(client, case_id, "approve").status_code == 302
    switch(client, "reviewer")
    assert "通知書の封入誤り" in client.get("/reports/queue/approved").get_data(as_text=True)
    assert workflow_post(client, case_id, "publish").status_code == 302
    assert status_of(app, case_id) == "published"

    switch(client, "colleague")  # the whole office now reads it, with the exchange
    html = client.get(f"/cases/{case_id}").get_data(as_text=True)
    assert "10月3日15時に訪問して回収した。" in html
    assert "直後の対応に日時を書いてください。" in html
    assert "封入封緘機の重量チェックで枚数違いを止める。" in html
    assert "封入物と宛名の照合が手作業の目視だけに頼っていた。" in html
    assert "reporter さん" not in html  # the reporter is not named to the whole office
    with app.app_context():
        actions = [row[0] for row in get_db().execute(
            "SELECT action FROM audit_log WHERE case_id = ? ORDER BY audit_id", [case_id])]
    steps = [action for action in actions if action not in ("report_update", "case_read")]
    assert steps == ["report_create", "report_submit", "report_return", "report_submit",
                     "report_approve", "report_publish"]


def test_near_miss_goes_through_the_workflow_and_appears_in_the_case_list(client, office, app):
    case_id = filed(client, "near_miss")
    switch(client, "manager")
    workflow_post(client, case_id, "approve")
    switch(client, "reviewer")
    workflow_post(client, case_id, "publish")
    switch(client, "trainer")
    html = client.get("/cases?origin=internal").get_data(as_text=True)
    assert "1件の事例" in html
    page = client.get(f"/cases/{case_id}").get_data(as_text=True)
    for heading in ("何が起きそうになったか", "どうして気づいたか", "起こりえたこと", "防ぐためのアイデア"):
        assert heading in page
    assert 'href="/checklist/items/3-5"' in page


def test_return_needs_a_reason(client, office, app):
    case_id = filed(client)
    switch(client, "manager")
    workflow_post(client, case_id, "return", comment="  ")
    assert status_of(app, case_id) == "submitted"
    assert "差し戻す理由を書いてください" in client.get(f"/cases/{case_id}").get_data(as_text=True)


def test_publish_is_refused_while_personal_data_is_open(client, office, app):
    form = incident_form(summary="佐藤花子様（090-1234-5678）宛ての通知を別人に送付した。")
    login(client, "reporter")
    case_id = file_report(client, "incident", form)
    with app.app_context():
        db = get_db()
        workflow.submit_report(db, office["reporter"], case_id, pii_acknowledged=True)
        workflow.approve_report(db, office["manager"], case_id)
    switch(client, "reviewer")
    page = client.get(f"/cases/{case_id}").get_data(as_text=True)
    assert "個人情報らしき記載が 2 件あります" in page
    workflow_post(client, case_id, "publish")
    assert status_of(app, case_id) == "approved"
    # Mask the phone number, confirm the name is a made-up example: then publishing works.
    workflow_post(client, case_id, "pii", field="summary", start="6", end="19", action="mask",
                  version=form_version(page, f"/reports/{case_id}/pii"))
    page = client.get(f"/cases/{case_id}").get_data(as_text=True)
    workflow_post(client, case_id, "pii", field="summary", text="佐藤花子様", action="confirm",
                  version=form_version(page, f"/reports/{case_id}/pii"))
    with app.app_context():
        summary = get_db().execute("SELECT summary FROM cases WHERE case_id = ?", [case_id]).fetchone()[0]
    assert summary == "佐藤花子様（＊＊＊）宛ての通知を別人に送付した。"
    assert workflow_post(client, case_id, "publish").status_code == 302
    assert status_of(app, case_id) == "published"


def test_only_reviewers_review_personal_data(client, office, app):
    form = near_miss_form(summary="03-1111-2222へ送るところだった。")
    login(client, "reporter")
    case_id = file_report(client, "near_miss", form)
    with app.app_context():
        workflow.submit_report(get_db(), office["reporter"], case_id, pii_acknowledged=True)
    switch(client, "manager")
    assert workflow_post(client, case_id, "pii", field="summary", start="0", end="12",
                         action="mask").status_code == 403


def test_anonymous_near_miss_hides_the_reporter_from_everyone_else(client, office, app):
    login(client, "reporter")
    case_id = file_report(client, "near_miss", near_miss_form(anonymous="1"), submit=True)
    workflow_post(client, case_id, "comments", comment="補足です。短縮ダイヤルは3番でした。")
    switch(client, "manager")
    pages = [client.get(f"/cases/{case_id}").get_data(as_text=True),
             client.get("/reports/queue/submitted").get_data(as_text=True)]
    workflow_post(client, case_id, "approve")
    switch(client, "reviewer")
    pages += [client.get(f"/cases/{case_id}").get_data(as_text=True),
              client.get("/reports/queue/approved").get_data(as_text=True)]
    workflow_post(client, case_id, "publish")
    switch(client, "admin")
    audit_page = client.get("/admin/audit").get_data(as_text=True)
    case_rows = [row for row in audit_page.split("<tr>") if f"<td>{case_id}</td>" in row]
    assert case_rows and all("reporter" not in row for row in case_rows)
    switch(client, "colleague")
    pages += [client.get(f"/cases/{case_id}").get_data(as_text=True),
              client.get("/cases?origin=internal").get_data(as_text=True)]
    for html in pages:
        assert "reporter さん" not in html
        assert ">reporter<" not in html
    assert "報告者（匿名）" in pages[0]
    with app.app_context():
        db = get_db()
        entries = audit.list_entries(db, office["admin"])
        assert all(e["user_id"] != office["reporter"].user_id for e in entries if e["case_id"] == case_id)
        # The reporter still sees it as theirs.
        mine = workflow.my_reports(db, office["reporter"])
        assert [row["case_id"] for row in mine] == [case_id]
        assert mine[0]["reporter_name"] == "reporter さん"


def test_comments_thread_between_department_and_reviewer(client, office, app):
    case_id = filed(client)
    switch(client, "reviewer")
    workflow_post(client, case_id, "comments", comment="封入封緘機の導入時期を教えてください。")
    switch(client, "reporter")
    workflow_post(client, case_id, "comments", comment="来年度4月の予定です。")
    html = client.get(f"/cases/{case_id}").get_data(as_text=True)
    assert html.index("封入封緘機の導入時期") < html.index("来年度4月の予定です。")
    switch(client, "other_manager")
    assert workflow_post(client, case_id, "comments", comment="横から").status_code in (403, 404)


def test_reviewer_records_statutory_reports_and_sees_deadlines(client, office, app):
    form = incident_form(affected_count="300", discovered_on="2026-10-03")
    case_id = filed(client, "incident", form=form)
    with app.app_context():
        db = get_db()
        rows = workflow.deadlines(db, office["reviewer"], today=date(2026, 10, 20))
        assert [row["case_id"] for row in rows] == [case_id]
        assert rows[0]["overdue"] == ["速報"]
    switch(client, "reviewer")
    html = client.get("/reports/deadlines").get_data(as_text=True)
    assert "通知書の封入誤り" in html
    version = form_version(client.get(f"/cases/{case_id}").get_data(as_text=True),
                           f"/reports/{case_id}/statutory")
    workflow_post(client, case_id, "statutory", prelim_reported_on="2026-10-06",
                  final_reported_on="", disclosure="none", disclosure_reason="", version=version)
    with app.app_context():
        assert get_db().execute("SELECT prelim_reported_on FROM cases WHERE case_id = ?",
                                [case_id]).fetchone()[0] is None  # refused: no reason for 非公表
    workflow_post(client, case_id, "statutory", prelim_reported_on="2026-10-06",
                  final_reported_on="2026-10-30", disclosure="batch", disclosure_reason="",
                  version=version)
    with app.app_context():
        assert workflow.deadlines(get_db(), office["reviewer"], today=date(2026, 11, 20)) == []
    switch(client, "manager")
    assert client.get("/reports/deadlines").status_code == 403


def test_manager_updates_countermeasure_progress_and_the_reporter_sees_it(client, office, app):
    case_id = filed(client)
    with app.app_context():
        countermeasure_id = get_db().execute(
            "SELECT countermeasure_id FROM countermeasures WHERE case_id = ?", [case_id]).fetchone()[0]
    switch(client, "manager")
    page = client.get(f"/cases/{case_id}").get_data(as_text=True)
    client.post(f"/reports/countermeasures/{countermeasure_id}",
                data={"csrf_token": csrf_token(page), "status": "done", "case_id": case_id,
                      "version": form_version(page, f"/reports/countermeasures/{countermeasure_id}")})
    switch(client, "reporter")
    html = client.get("/reports/mine").get_data(as_text=True)
    assert "あなたの報告で変わったこと" in html and "完了" in html
    switch(client, "colleague")
    token = csrf_token(client.get("/").get_data(as_text=True))
    # A colleague may not read the submitted report at all: it is missing to them.
    assert client.post(f"/reports/countermeasures/{countermeasure_id}",
                       data={"csrf_token": token, "status": "planned", "case_id": case_id}).status_code == 404


def test_queues_are_only_for_their_roles(client, office):
    login(client, "reporter")
    assert client.get("/reports/queue/submitted").status_code == 403
    assert client.get("/reports/queue/approved").status_code == 403


def test_queue_sorts_and_filters(client, office, app):
    first = filed(client, "incident")
    second = file_report(client, "near_miss", submit=True)
    with app.app_context():
        db = get_db()
        db.execute("UPDATE cases SET submitted_at = '2026-01-01T00:00:00+00:00' WHERE case_id = ?", [first])
        db.execute("UPDATE cases SET submitted_at = '2026-02-01T00:00:00+00:00' WHERE case_id = ?", [second])
        manager = office["manager"]
        assert [r["case_id"] for r in workflow.queue(db, manager, status="submitted")] == [first, second]
        assert [r["case_id"] for r in workflow.queue(db, manager, status="submitted", sort="newest")] == [second, first]
        assert [r["case_id"] for r in workflow.queue(db, manager, status="submitted", kind="near_miss")] == [second]


def test_post_without_csrf_changes_nothing(client, office, app):
    case_id = filed(client)
    switch(client, "manager")
    assert client.post(f"/reports/{case_id}/approve").status_code == 400
    assert status_of(app, case_id) == "submitted"


HOSTILE_NARRATIVES = [
    "<script>alert('x')</script>",
    "[押して](javascript:alert(1))",
    '<img src=x onerror="alert(1)">',
    '<svg onload="alert(1)"><circle/></svg>',
    "[data](data:text/html;base64,PHNjcmlwdD4=)",
    "<iframe src=https://evil.example></iframe>",
]


def test_hostile_markdown_in_a_published_report_is_rendered_inert(client, office, app):
    summary = "封入誤りがあった。\n\n" + "\n\n".join(HOSTILE_NARRATIVES)
    login(client, "reporter")
    case_id = file_report(client, "incident", incident_form(summary=summary), submit=True)
    with app.app_context():
        db = get_db()
        workflow.approve_report(db, office["manager"], case_id)
        workflow.publish_report(db, office["reviewer"], case_id)
    switch(client, "colleague")
    html = client.get(f"/cases/{case_id}").get_data(as_text=True)
    body = html.split('<div class="prose">', 1)[1].split("</div>", 1)[0]
    assert "封入誤りがあった。" in body
    for forbidden in ("<script", "javascript:", "onerror", "onload", "<svg", "<iframe", "data:text"):
        assert forbidden not in body.lower(), forbidden


def _last_comment(app, case_id):
    with app.app_context():
        return get_db().execute(
            "SELECT comment_id, body FROM comments WHERE case_id = ? ORDER BY comment_id DESC"
            " LIMIT 1", [case_id]).fetchone()


def _published(client, office, app):
    case_id = filed(client)
    with app.app_context():
        db = get_db()
        workflow.approve_report(db, office["manager"], case_id)
        workflow.publish_report(db, office["reviewer"], case_id)
    return case_id


def test_publish_is_refused_while_a_comment_holds_personal_data(client, office, app):
    case_id = filed(client)
    workflow_post(client, case_id, "comments", comment="山田太郎様の連絡先は（03）1234-5678です。")
    comment_id, _ = _last_comment(app, case_id)
    with app.app_context():
        workflow.approve_report(get_db(), office["manager"], case_id)
    switch(client, "reviewer")
    page = client.get(f"/cases/{case_id}").get_data(as_text=True)
    assert "個人情報らしき記載が 2 件あります" in page
    assert "やりとりのコメント：<mark>（03）1234-5678</mark>" in page
    workflow_post(client, case_id, "publish")
    assert status_of(app, case_id) == "approved"
    start = len("山田太郎様の連絡先は")
    workflow_post(client, case_id, "pii", field=f"comment-{comment_id}", start=str(start),
                  end=str(start + len("（03）1234-5678")), action="mask",
                  version=form_version(page, f"/reports/{case_id}/pii"))
    assert _last_comment(app, case_id)[1] == "山田太郎様の連絡先は＊＊＊です。"
    workflow_post(client, case_id, "publish")
    assert status_of(app, case_id) == "approved"  # the name is still open
    page = client.get(f"/cases/{case_id}").get_data(as_text=True)
    workflow_post(client, case_id, "pii", field=f"comment-{comment_id}", text="山田太郎様",
                  action="confirm", version=form_version(page, f"/reports/{case_id}/pii"))
    assert workflow_post(client, case_id, "publish").status_code == 302
    assert status_of(app, case_id) == "published"
    with app.app_context():
        actions = [(e["action"], e["detail"]) for e in audit.list_entries(get_db(), office["admin"])
                   if e["case_id"] == case_id]
    assert any(action == "pii_mask" and f"comment-{comment_id}" in str(detail)
               for action, detail in actions)


def test_a_comment_with_personal_data_after_publication_is_shown_only_to_handlers(
        client, office, app):
    case_id = _published(client, office, app)
    response = workflow_post(client, case_id, "comments", comment="相手方の電話03-1234-5678に連絡済み。")
    assert response.status_code == 302
    assert "関係者にだけ表示されます" in client.get(f"/cases/{case_id}").get_data(as_text=True)
    comment_id, _ = _last_comment(app, case_id)
    for outsider in ("colleague", "other_manager", "trainer"):
        switch(client, outsider)
        page = client.get(f"/cases/{case_id}").get_data(as_text=True)
        assert "03-1234-5678" not in page and "相手方の電話" not in page
    for handler in ("reporter", "manager", "reviewer"):
        switch(client, handler)
        page = client.get(f"/cases/{case_id}").get_data(as_text=True)
        assert "03-1234-5678" in page and "関係者にだけ表示しています" in page
    # The reviewer masks it on the published case; then everyone sees the masked comment.
    workflow_post(client, case_id, "pii", field=f"comment-{comment_id}", start="6", end="18",
                  action="mask", version=form_version(page, f"/reports/{case_id}/pii"))
    switch(client, "colleague")
    page = client.get(f"/cases/{case_id}").get_data(as_text=True)
    assert "相手方の電話＊＊＊に連絡済み。" in page and "関係者にだけ表示しています" not in page


def test_a_confirmed_comment_is_shown_to_everyone_and_only_reviewers_confirm(client, office, app):
    case_id = _published(client, office, app)
    switch(client, "manager")
    workflow_post(client, case_id, "comments", comment="窓口の代表番号03-5555-0000で受けた。")
    comment_id, _ = _last_comment(app, case_id)
    page = client.get(f"/cases/{case_id}").get_data(as_text=True)
    assert workflow_post(client, case_id, "pii", field=f"comment-{comment_id}",
                         text="03-5555-0000", action="confirm",
                         version=form_version(page, None)).status_code in (403, 404)
    switch(client, "colleague")
    assert "03-5555-0000" not in client.get(f"/cases/{case_id}").get_data(as_text=True)
    switch(client, "reviewer")
    page = client.get(f"/cases/{case_id}").get_data(as_text=True)
    workflow_post(client, case_id, "pii", field=f"comment-{comment_id}", text="03-5555-0000",
                  action="confirm", version=form_version(page, f"/reports/{case_id}/pii"))
    switch(client, "colleague")
    assert "窓口の代表番号03-5555-0000で受けた。" in client.get(f"/cases/{case_id}").get_data(as_text=True)


def test_comment_text_is_not_in_the_search_index(client, office, app):
    case_id = _published(client, office, app)
    workflow_post(client, case_id, "comments", comment="ゼブラ柄の封筒について補足します。")
    switch(client, "reviewer")
    assert client.get("/api/search?q=ゼブラ柄").get_json()["total"] == 0


def test_a_published_case_names_its_reporter_to_nobody_but_the_audit_log_keeps_it(client, office, app):
    case_id = filed(client)
    workflow_post(client, case_id, "comments", comment="補足：封入は2人で行っていました。")
    switch(client, "manager")
    assert "報告者：reporter さん" in client.get(f"/cases/{case_id}").get_data(as_text=True)
    workflow_post(client, case_id, "approve")
    switch(client, "reviewer")
    assert "報告者：reporter さん" in client.get(f"/cases/{case_id}").get_data(as_text=True)
    workflow_post(client, case_id, "publish")
    assert status_of(app, case_id) == "published"
    for who in ("reviewer", "manager", "reporter", "colleague"):
        switch(client, who)
        # The page's main part: the header names whoever is signed in.
        html = client.get(f"/cases/{case_id}").get_data(as_text=True).split("<main", 1)[1]
        assert "補足：封入は2人で行っていました。" in html
        assert "reporter さん" not in html, who
        assert "<strong>報告者</strong>" in html, who
        listing = client.get("/cases", query_string={"q": "通知書の封入誤り"}).get_data(as_text=True)
        assert "reporter さん" not in listing.split("<main", 1)[1], who
    with app.app_context():
        reporters = {row[0] for row in get_db().execute(
            "SELECT user_id FROM audit_log WHERE case_id = ? AND action = 'report_create'", [case_id])}
    assert reporters == {office["reporter"].user_id}


def test_reviewers_queue_lists_comments_held_for_personal_data_until_confirmed(client, office, app):
    case_id = _published(client, office, app)
    switch(client, "manager")
    workflow_post(client, case_id, "comments", comment="窓口の代表番号03-5555-0000で受けた。")
    comment_id, _ = _last_comment(app, case_id)
    switch(client, "reviewer")
    queue = client.get("/reports/queue/approved").get_data(as_text=True)
    held = queue.split('id="held-comments"')[1]
    assert f'/cases/{case_id}#workflow' in held and "電話番号" in held
    page = client.get(f"/cases/{case_id}").get_data(as_text=True)
    workflow_post(client, case_id, "pii", field=f"comment-{comment_id}", text="03-5555-0000",
                  action="confirm", version=form_version(page, f"/reports/{case_id}/pii"))
    held = client.get("/reports/queue/approved").get_data(as_text=True).split('id="held-comments"')[1]
    assert f'/cases/{case_id}#workflow' not in held and "確認待ちのコメントはありません" in held
