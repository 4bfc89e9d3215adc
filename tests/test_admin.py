import pytest

from kb import audit, users
from kb.db import get_db
from kb.exceptions import Forbidden
from tests.conftest import PASSWORD, csrf_token, login, post_form

NEW_USER = {"login": "suzuki.ichiro", "display_name": "鈴木 一郎", "department_id": "11",
            "roles": ["staff", "trainer"], "password": "a-long-enough-password"}


def _token(client):
    return csrf_token(client.get("/").get_data(as_text=True))


def count_users(app):
    with app.app_context():
        return get_db()["users"].count


@pytest.mark.parametrize("roles", [("staff",), ("manager",), ("reviewer",), ("trainer",)])
def test_non_admins_cannot_reach_admin_pages_by_url(client, signed_in, app, roles):
    signed_in(*roles)
    for url in ("/admin/", "/admin/users", "/admin/users/new", "/admin/users/1", "/admin/audit"):
        response = client.get(url)
        assert response.status_code == 403, url
        assert "この操作は許可されていません" in response.get_data(as_text=True)
    before = count_users(app)
    response = client.post("/admin/users/new", data={"csrf_token": _token(client), **NEW_USER})
    assert response.status_code == 403
    assert count_users(app) == before


def test_core_refuses_account_changes_by_non_admins(db, make_user):
    staff = make_user("taro", "staff")
    with pytest.raises(Forbidden):
        users.create_user(db, staff, login="x-user", display_name="x", department_id=1,
                          roles=["admin"], password=PASSWORD)
    with pytest.raises(Forbidden):
        users.update_user(db, staff, staff.user_id, display_name="x", department_id=1,
                          roles=["admin"], active=True)
    with pytest.raises(Forbidden):
        users.list_users(db, staff)
    with pytest.raises(Forbidden):
        audit.list_entries(db, staff)


def test_admin_does_not_see_the_admin_menu_hidden_from_staff(client, signed_in):
    signed_in("staff")
    assert 'href="/admin/"' not in client.get("/").get_data(as_text=True)


def test_admin_creates_a_user_who_can_then_sign_in(client, signed_in, app):
    signed_in("admin")
    response = post_form(client, "/admin/users/new", NEW_USER)
    assert response.status_code == 302
    html = client.get("/admin/users").get_data(as_text=True)
    assert "suzuki.ichiro" in html and "鈴木 一郎" in html and "研修担当" in html
    client.post("/logout", data={"csrf_token": _token(client)})
    assert login(client, "suzuki.ichiro", "a-long-enough-password").status_code == 302
    assert "鈴木 一郎" in client.get("/").get_data(as_text=True)


def test_bad_input_is_shown_next_to_each_field_and_what_was_typed_is_kept(client, signed_in, app):
    signed_in("admin")
    before = count_users(app)
    response = post_form(client, "/admin/users/new", {
        "login": "a b", "display_name": "入力した氏名", "department_id": "0",
        "password": "short"})
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "ログインIDは半角英数字" in html
    assert "所属を選んでください。" in html
    assert "役割を一つ以上選んでください。" in html
    assert "パスワードは10文字以上にしてください。" in html
    assert 'value="入力した氏名"' in html
    assert 'value="a b"' in html
    assert count_users(app) == before


def test_duplicate_login_is_refused(client, signed_in, make_user):
    signed_in("admin")
    make_user("suzuki.ichiro", "staff")
    html = post_form(client, "/admin/users/new", NEW_USER).get_data(as_text=True)
    assert "このログインIDは既に使われています。" in html


def test_admin_changes_department_and_roles_and_deactivates(client, signed_in, make_user, app):
    signed_in("admin")
    target = make_user("taro", "staff")
    response = post_form(client, f"/admin/users/{target.user_id}", {
        "display_name": "山田 太郎", "department_id": "20", "roles": ["manager"]})
    assert response.status_code == 302
    with app.app_context():
        changed = users.get_user(get_db(), target.user_id)
    assert changed.display_name == "山田 太郎"
    assert changed.department_id == 20
    assert changed.roles == frozenset({"manager"})
    assert changed.active is False  # the box was not ticked
    client.post("/logout", data={"csrf_token": _token(client)})
    assert "正しくありません" in login(client, "taro").get_data(as_text=True)


def test_admin_cannot_lock_themself_out(client, signed_in, app):
    admin = signed_in("admin")
    html = post_form(client, f"/admin/users/{admin.user_id}", {
        "display_name": "x", "department_id": str(admin.department_id), "roles": ["staff"],
        "active": "y"}).get_data(as_text=True)
    assert "自分自身の管理者の役割を外したり" in html
    with app.app_context():
        assert users.get_user(get_db(), admin.user_id).has_role("admin")


def test_audit_log_page_lists_account_changes(client, signed_in):
    signed_in("admin")
    post_form(client, "/admin/users/new", NEW_USER)
    html = client.get("/admin/audit").get_data(as_text=True)
    assert "user_create" in html and "suzuki.ichiro" in html


def test_unknown_user_page_is_404(client, signed_in):
    signed_in("admin")
    assert client.get("/admin/users/99999").status_code == 404


def test_audit_log_filters_and_exports_csv(client, signed_in, make_user):
    signed_in("admin")
    make_user("taro", "staff")
    client.post("/logout", data={"csrf_token": _token(client)})
    login(client, "taro", "wrong-password")
    login(client, "admin-user")
    html = client.get("/admin/audit?action=login_failed").get_data(as_text=True)
    table = html.split("<tbody>", 1)[1]
    assert "<td>login_failed</td>" in table and "<td>user_create</td>" not in table
    body = client.get("/admin/audit.csv?action=user_create").data
    assert body.startswith(b"\xef\xbb\xbf")
    text = body.decode("utf-8-sig")
    assert text.splitlines()[0] == "日時 (UTC),利用者,操作,事例,対象,詳細"
    assert "taro" in text and "login_failed" not in text


def test_staff_cannot_export_the_audit_log(client, signed_in):
    signed_in("staff")
    assert client.get("/admin/audit.csv").status_code == 403
