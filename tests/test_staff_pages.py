"""The admin's roster pages: upload with a preview, the staff list, a person's page, and the
demo roster of `init --demo`."""

import io
import re
from datetime import date, timedelta

import pytest

from kb import dates, demo_roster, roster, staff, users
from kb.db import get_db
from tests.conftest import csrf_token, login, make_app
from tests.test_staff import MANAGERS, person, roster_bytes


def _token(client) -> str:
    return csrf_token(client.get("/").get_data(as_text=True))


def upload(client, data: bytes, *, deactivate_missing=False, name="roster.csv"):
    form = {"csrf_token": _token(client), "file": (io.BytesIO(data), name)}
    if deactivate_missing:
        form["deactivate_missing"] = "1"
    return client.post("/admin/staff/import", data=form, content_type="multipart/form-data")


def hidden_fields(html: str) -> dict:
    """The hidden fields of the first form that posts to the commit URL."""
    form = re.search(r'<form method="post" action="/admin/staff/import/commit">(.*?)</form>', html, re.S)
    assert form, "no 取り込む form on the page"
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form.group(1)))


def commit(client, preview_html: str, **extra):
    return client.post("/admin/staff/import/commit", data={**hidden_fields(preview_html), **extra})


def roster_count(app) -> int:
    with app.app_context():
        return get_db().execute("SELECT count(*) FROM users WHERE employee_number IS NOT NULL").fetchone()[0]


def snapshot(app):
    with app.app_context():
        db = get_db()
        return [db.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
                for table in ("users", "user_roles", "staff_status_periods", "staff_assignments",
                              "audit_log")]


def core_import(app, rows, **options):
    with app.app_context():
        return roster.import_staff(get_db(), users.SYSTEM, roster_bytes(rows), "roster.csv",
                                   managers=MANAGERS, **options)


def user_id(app, employee_number) -> int:
    with app.app_context():
        return get_db().execute("SELECT user_id FROM users WHERE employee_number = ?",
                                [employee_number]).fetchone()[0]


# --- upload, preview, import -------------------------------------------------------------------

def test_cp932_upload_previews_without_writing_then_imports_exactly_what_was_shown(client, signed_in, app):
    signed_in("admin")
    data = roster_bytes([person("100001", "山田　太郎", department="戸籍住民課", position="課長"),
                         person("100002", "佐藤　花子", department="kumin-kazei", status="育児休業",
                                start="2026/4/1", until="令和9年3月31日")])
    preview = upload(client, data)
    html = preview.get_data(as_text=True)
    assert preview.status_code == 200
    assert "新規 2人・更新 0人・変更なし 0人・無効化 0人" in html
    assert "山田　太郎" in html and "課税課" in html and "育児休業（2026-04-01〜2027-03-31）" in html
    assert roster_count(app) == 0
    response = commit(client, html)
    assert response.status_code == 302
    assert "新規 2人" in client.get(response.location).get_data(as_text=True)
    assert roster_count(app) == 2
    with app.app_context():
        yamada = users.get_user(get_db(), user_id(app, "100001"))
    assert yamada.roles == {"staff", "manager"}


def test_preview_of_a_changed_roster_shows_each_field_old_and_new(client, signed_in, app):
    signed_in("admin")
    core_import(app, [person("100001", "山田　太郎", department="kumin-koseki", position="主事")])
    changed = roster_bytes([person("100001", "山田　太郎", department="kumin-kazei", position="課長",
                                   status="病気休暇", start="2026-01-05", until="2026-02-27")])
    html = upload(client, changed).get_data(as_text=True)
    assert "新規 0人・更新 1人・変更なし 0人・無効化 0人" in html
    assert "所属：戸籍住民課 → 課税課" in html
    assert "役職：主事 → 課長" in html
    assert "在籍区分：在職" in html and "→ 病気休暇（2026-01-05〜2026-02-27）" in html
    assert "所属長の役割：なし → 所属長" in html


def test_reuploading_the_imported_roster_says_nothing_would_change_and_offers_no_import(client, signed_in, app):
    signed_in("admin")
    rows = [person("100001"), person("100002")]
    core_import(app, rows)
    html = upload(client, roster_bytes(rows)).get_data(as_text=True)
    assert "変更なし 2人" in html and "同じ内容が取り込み済みです" in html
    assert "/admin/staff/import/commit" not in html


def test_bad_roster_lists_every_problem_with_line_and_column_and_writes_nothing(client, signed_in, app):
    signed_in("admin")
    before = snapshot(app)
    data = roster_bytes([person("100001"), person("100001", department="存在しない課"),
                         person("100003", status="長期出張", start="2026-02-30")])
    response = upload(client, data)
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert 'aria-describedby="file-errors"' in html
    rows = re.findall(r"<tr><td>(\d+行目)</td><td>([^<]*)</td><td>([^<]*)</td></tr>", html)
    assert [(line, column) for line, column, _ in rows] == [
        ("3行目", "職員番号"), ("3行目", "所属"), ("4行目", "在籍区分"), ("4行目", "区分開始日")]
    assert "2行目と重複しています" in html and "所属「存在しない課」は登録されていません" in html
    assert "/admin/staff/import/commit" not in html
    assert snapshot(app) == before


def test_upload_without_a_file_asks_for_one(client, signed_in):
    signed_in("admin")
    response = client.post("/admin/staff/import", data={"csrf_token": _token(client)},
                           content_type="multipart/form-data")
    assert response.status_code == 422
    assert "取り込む職員名簿のファイルを選んでください。" in response.get_data(as_text=True)


def test_deactivating_more_than_a_tenth_asks_again_with_the_count_and_first_names(client, signed_in, app):
    signed_in("admin")
    core_import(app, [person(f"1000{i:02d}", f"職員　{i:02d}") for i in range(10)])
    html = upload(client, roster_bytes([person("100000", "職員　00")]),
                  deactivate_missing=True).get_data(as_text=True)
    assert "無効になるアカウント（9人）" in html and "もう一度確認します" in html
    before = snapshot(app)
    asked = commit(client, html)
    page = asked.get_data(as_text=True)
    assert asked.status_code == 409
    assert "<strong>9件</strong>を無効にします" in page
    assert "100001 職員　01" in page and "100009 職員　09" in page
    assert snapshot(app) == before  # the core refused: nothing written until confirmed
    assert 'name="confirmed" value="1"' in page
    done = client.post("/admin/staff/import/commit", data={**hidden_fields(page), "confirmed": "1"})
    assert done.status_code == 302
    with app.app_context():
        active = get_db().execute("SELECT count(*) FROM users WHERE employee_number IS NOT NULL"
                                  " AND active = 1").fetchone()[0]
    assert active == 1


def test_a_stale_preview_is_refused_and_the_new_outcome_shown(client, signed_in, app):
    signed_in("admin")
    core_import(app, [person("100001", "山田　太郎")])
    html = upload(client, roster_bytes([person("100001", "山田　太郎", department="kumin-kazei")])
                  ).get_data(as_text=True)
    assert "所属：戸籍住民課 → 課税課" in html
    # Meanwhile someone else moves him elsewhere: the preview no longer says what would happen.
    core_import(app, [person("100001", "山田　太郎", department="fukushi-kanri")])
    before = snapshot(app)
    refused = commit(client, html)
    page = refused.get_data(as_text=True)
    assert refused.status_code == 409
    assert "プレビューを表示した後に職員の情報が変わったため" in page
    assert "所属：福祉管理課 → 課税課" in page
    assert snapshot(app) == before
    assert commit(client, page).status_code == 302  # the new preview, once seen, imports
    with app.app_context():
        assert users.get_user(get_db(), user_id(app, "100001")).department_name == "課税課"


def test_a_tampered_deactivation_option_does_not_match_the_preview(client, signed_in, app):
    signed_in("admin")
    core_import(app, [person("100001"), person("100002")])
    html = upload(client, roster_bytes([person("100001", name="新しい　名前")])).get_data(as_text=True)
    assert "無効化 0人" in html  # 100002 is missing, but the option was not ticked
    before = snapshot(app)
    response = client.post("/admin/staff/import/commit",
                           data={**hidden_fields(html), "deactivate_missing": "1", "confirmed": "1"})
    assert response.status_code == 409
    assert "プレビューを表示した後に" in response.get_data(as_text=True)
    assert snapshot(app) == before


def test_a_preview_of_another_session_cannot_be_imported(client, signed_in, app, make_user):
    signed_in("admin")
    html = upload(client, roster_bytes([person("100001")])).get_data(as_text=True)
    other = app.test_client()
    make_user("other-admin", "admin")
    login(other, "other-admin")
    response = other.post("/admin/staff/import/commit",
                          data={**hidden_fields(html), "csrf_token": _token(other)})
    assert response.status_code == 400
    assert roster_count(app) == 0


# --- who may see the pages --------------------------------------------------------------------

@pytest.mark.parametrize("role", ["staff", "reviewer", "trainer"])
def test_non_admins_get_403_on_every_roster_page(client, signed_in, app, role):
    signed_in(role)
    core_import(app, [person("100001")])
    target = user_id(app, "100001")
    for url in ("/admin/staff/", "/admin/staff/import", f"/admin/staff/{target}", "/admin/staff/999999"):
        assert client.get(url).status_code == 403, url
    token = _token(client)
    for url in ("/admin/staff/import", "/admin/staff/import/commit", f"/admin/staff/{target}/status"):
        assert client.post(url, data={"csrf_token": token, "status": "retired", "starts_on": "2026-01-01",
                                      "reason": "x"}).status_code == 403, url
    with app.app_context():
        assert staff.status_history(get_db(), users.SYSTEM, target)[-1]["source"] == "roster"


def test_a_manager_sees_only_their_own_departments_list_read_only(client, signed_in, app):
    core_import(app, [person("100001", "戸籍　一郎", department="kumin-koseki"),
                      person("100002", "課税　二郎", department="kumin-kazei")])
    signed_in("manager")
    html = client.get("/admin/staff/?department_id=").get_data(as_text=True)
    assert "戸籍　一郎" in html and "課税　二郎" not in html
    assert "閲覧のみ" in html and "/admin/staff/import" not in html
    assert f"/admin/staff/{user_id(app, '100001')}" not in html
    assert client.get(f"/admin/staff/{user_id(app, '100001')}").status_code == 403


def test_an_unknown_person_is_404_for_admins(client, signed_in):
    signed_in("admin")
    assert client.get("/admin/staff/999999").status_code == 404


# --- the staff list ----------------------------------------------------------------------------

@pytest.fixture
def listed(app):
    today = dates.office_today()  # the leave spans it by weeks: a midnight between is harmless
    on_leave = (today - timedelta(days=30)).isoformat(), (today + timedelta(days=300)).isoformat()
    core_import(app, [
        person("100001", "山田　太郎", kana="ヤマダ タロウ", department="kumin-koseki", position="課長"),
        person("100002", "佐藤　花子", kana="サトウ ハナコ", department="kumin-kazei", status="育児休業",
               start=on_leave[0], until=on_leave[1]),
        person("100003", "鈴木　一郎", kana="スズキ イチロウ", department="fukushi-kanri"),
        person("100004", "山口　次郎", kana="ヤマグチ ジロウ", department="fukushi-kanri", status="退職",
               start="2025-03-31"),
    ])


def names_listed(client, query: str) -> list[str]:
    html = client.get(f"/admin/staff/?{query}").get_data(as_text=True)
    return re.findall(r'<a href="/admin/staff/\d+">([^<]+)</a>', html)


def test_list_filters_by_department_tree_status_role_and_words(client, signed_in, app, listed):
    signed_in("admin", department="kikaku-johoseisaku")
    with app.app_context():
        db = get_db()
        kumin = users.get_department_by_code(db, "kumin")["department_id"]
        kanri = users.get_department_by_code(db, "fukushi-kanri")["department_id"]
    assert names_listed(client, f"department_id={kumin}") == ["山田　太郎", "佐藤　花子"]
    assert names_listed(client, f"department_id={kanri}") == ["鈴木　一郎", "山口　次郎"]
    assert names_listed(client, "status=childcare_leave") == ["佐藤　花子"]
    assert names_listed(client, "status=retired") == ["山口　次郎"]
    assert names_listed(client, f"status=active&department_id={kanri}") == ["鈴木　一郎"]
    assert names_listed(client, "role=manager") == ["山田　太郎"]
    assert names_listed(client, "q=山田太郎") == ["山田　太郎"]
    assert names_listed(client, "q=やまぐち") == ["山口　次郎"]  # hiragana finds the kana
    assert names_listed(client, "q=ｻﾄｳ") == ["佐藤　花子"]
    assert names_listed(client, "q=100003") == ["鈴木　一郎"]
    assert names_listed(client, "q=山+一郎") == []
    html = client.get("/admin/staff/?q=存在しない人").get_data(as_text=True)
    assert "この条件に当てはまる職員はいません" in html


def test_list_shows_todays_status_and_the_account_state(client, signed_in, listed):
    signed_in("admin")
    html = client.get("/admin/staff/?q=山口").get_data(as_text=True)
    row = re.search(r"山口　次郎.*?</tr>", html, re.S).group(0)
    assert "退職" in row and "無効" in row


def test_the_list_is_paged_by_fifty(client, signed_in, app):
    admin = signed_in("admin")
    core_import(app, [person(f"2{i:05d}") for i in range(120)])
    first = client.get("/admin/staff/").get_data(as_text=True)
    assert "121人（1 / 3ページ）" in first  # the 120 and the admin's own local account
    assert len(re.findall(r'<a href="/admin/staff/\d+">', first)) == 50
    last = client.get("/admin/staff/?page=3").get_data(as_text=True)
    assert len(re.findall(r'<a href="/admin/staff/\d+">', last)) == 21
    assert admin.login in client.get("/admin/staff/?page=99").get_data(as_text=True)  # the last page


# --- a person ----------------------------------------------------------------------------------

def test_person_page_shows_account_department_history_and_status_history(client, signed_in, app):
    signed_in("admin")
    core_import(app, [person("100001", "山田　太郎", email="yamada@example.jp")],
                today=date(2026, 1, 5))
    core_import(app, [person("100001", "山田　太郎", department="kumin-kazei", status="病気休暇",
                             start="2026-02-02", until="2026-02-27", email="yamada@example.jp")],
                today=date(2026, 2, 1))
    target = user_id(app, "100001")
    html = client.get(f"/admin/staff/{target}").get_data(as_text=True)
    assert "yamada@example.jp" in html and "パスワード未設定" in html and "職員名簿から" in html
    assignments = re.search(r'id="assignment-heading".*?</table>', html, re.S).group(0)
    assert re.findall(r"<tr><td>([^<]+)</td><td>([^<]+)</td><td>([^<]+)</td></tr>", assignments) == [
        ("区民部 課税課", "2026-02-01", "（現在）"), ("区民部 戸籍住民課", "2026-01-05", "2026-01-31")]
    statuses = re.search(r'id="status-heading".*?</table>', html, re.S).group(0)
    assert "病気休暇</td><td>2026-02-02</td><td>2026-02-27</td><td>職員名簿" in statuses
    assert "在職</td><td>2026-01-05</td><td>（定めなし）</td><td>職員名簿" in statuses


def test_manual_status_change_needs_a_reason_and_is_recorded_and_audited(client, signed_in, app):
    admin = signed_in("admin")
    core_import(app, [person("100001", "山田　太郎")])
    target = user_id(app, "100001")
    url = f"/admin/staff/{target}"
    html = client.get(url).get_data(as_text=True)
    version = re.search(r'name="version" value="(\d+)"', html).group(1)
    refused = client.post(f"{url}/status", data={"csrf_token": csrf_token(html), "version": version,
                                                 "status": "sick_leave", "starts_on": "2026-05-01",
                                                 "ends_on": "2026-04-01", "reason": " "})
    page = refused.get_data(as_text=True)
    assert refused.status_code == 422
    assert 'id="reason-errors"><li>変更の理由を書いてください。' in page
    assert 'id="ends_on-errors"><li>終了日が開始日より前です。' in page
    assert 'value="2026-05-01"' in page  # what was typed stays on the page
    with app.app_context():
        assert len(staff.status_history(get_db(), users.SYSTEM, target)) == 1
    done = client.post(f"{url}/status", data={"csrf_token": csrf_token(html), "version": version,
                                              "status": "sick_leave", "starts_on": "2026-05-01",
                                              "ends_on": "2026-05-20", "reason": "人事課から連絡"})
    assert done.status_code == 302
    shown = client.get(url).get_data(as_text=True)
    assert ("病気休暇</td><td>2026-05-01</td><td>2026-05-20</td><td>手作業</td><td>人事課から連絡</td>"
            f"<td>{admin.display_name}</td>") in shown
    with app.app_context():
        entry = get_db().execute("SELECT actor, target, detail FROM audit_log WHERE action = 'staff_status_change'"
                                 ).fetchone()
    assert entry[0] == admin.login and entry[1] == "100001" and "人事課から連絡" in entry[2]


def test_manual_status_change_from_a_stale_page_is_409_and_writes_nothing(client, signed_in, app):
    signed_in("admin")
    core_import(app, [person("100001")])
    target = user_id(app, "100001")
    html = client.get(f"/admin/staff/{target}").get_data(as_text=True)
    form = {"csrf_token": csrf_token(html), "version": re.search(r'name="version" value="(\d+)"', html).group(1),
            "status": "suspended", "starts_on": "2026-05-01", "reason": "一回目"}
    assert client.post(f"/admin/staff/{target}/status", data=form).status_code == 302
    stale = client.post(f"/admin/staff/{target}/status", data={**form, "reason": "古い画面から"})
    page = stale.get_data(as_text=True)
    assert stale.status_code == 409
    assert "別の管理者か名簿の取り込みがこの職員を更新したため、保存しませんでした" in page
    assert "古い画面から</textarea>" in page
    missing = client.post(f"/admin/staff/{target}/status", data={**form, "version": ""})
    assert missing.status_code == 409
    with app.app_context():
        assert [p["reason"] for p in staff.status_history(get_db(), users.SYSTEM, target)] == ["", "一回目"]


def test_a_roster_import_makes_an_open_status_form_stale(client, signed_in, app):
    signed_in("admin")
    core_import(app, [person("100001")])
    target = user_id(app, "100001")
    html = client.get(f"/admin/staff/{target}").get_data(as_text=True)
    core_import(app, [person("100001", department="kumin-kazei")])
    response = client.post(f"/admin/staff/{target}/status", data={
        "csrf_token": csrf_token(html), "version": re.search(r'name="version" value="(\d+)"', html).group(1),
        "status": "retired", "starts_on": "2026-01-01", "reason": "退職"})
    assert response.status_code == 409


# --- the demo roster ---------------------------------------------------------------------------

def test_init_demo_loads_the_demo_roster_through_the_importer_and_again_changes_nothing(data_dir):
    app = make_app(data_dir)
    runner = app.test_cli_runner()
    first = runner.invoke(args=["init", "--demo"])
    assert first.exit_code == 0, first.output
    added = int(re.search(r"demo roster: (\d+) people \(added (\d+), updated 0, unchanged 0\)",
                          first.output).group(2))
    assert 250 <= added <= 350
    before = snapshot(app)
    second = runner.invoke(args=["init", "--demo"])
    assert second.exit_code == 0, second.output
    assert f"demo roster: {added} people (added 0, updated 0, unchanged {added})" in second.output
    assert "demo accounts: already created" in second.output
    assert snapshot(app) == before
    with app.app_context():
        db = get_db()
        assert users.get_user(db, db.execute("SELECT user_id FROM users WHERE login = 'demo-manager'"
                                             ).fetchone()[0]).roles == {"manager"}
        assert db.execute("SELECT count(*) FROM users WHERE login LIKE 'demo-%' AND source = 'local'"
                          ).fetchone()[0] == 5
        today = {row["status"] for row in staff.list_staff(db, users.SYSTEM) if row["employee_number"]}
        assert today == set(staff.STATUSES)  # someone on each kind of leave now, and retired
        # Today read after `init --demo` read its own, never before: the roster's department
        # history starts on the day it was loaded, which a day read earlier (at import, or
        # before a midnight the run crosses) would miss.
        day = dates.office_today()
        leaves = staff.eligible_staff(db, users.get_department_by_code(db, "kumin")["department_id"],
                                      day, day)
        assert leaves  # the importer wrote department history the participation figures use
        heads = db.execute(
            "SELECT count(DISTINCT u.department_id) FROM users u JOIN user_roles r ON r.user_id = u.user_id"
            " WHERE r.role = 'manager' AND u.source = 'roster'").fetchone()[0]
        leaf_departments = db.execute("SELECT count(*) FROM departments d WHERE NOT EXISTS"
                                      " (SELECT 1 FROM departments c WHERE c.parent_id = d.department_id)"
                                      ).fetchone()[0]
        assert heads == leaf_departments
        emails = [row[0] for row in db.execute("SELECT email FROM users WHERE source = 'roster'")]
        assert all(email.endswith(f"@{demo_roster.EMAIL_DOMAIN}") for email in emails)
        kana = db.execute("SELECT name_kana FROM users WHERE source = 'roster' LIMIT 1").fetchone()[0]
        assert re.fullmatch(r"[ァ-ヶー]+ [ァ-ヶー]+", kana)


def test_the_demo_roster_loaded_again_months_later_changes_nothing(db):
    first = demo_roster.load_demo_roster(db, managers=MANAGERS, today=date(2026, 12, 1))
    assert first.applied and len(first.added) > 250
    later = demo_roster.load_demo_roster(db, managers=MANAGERS, today=date(2027, 6, 19))
    assert not later.applied and later.unchanged == len(first.added)
