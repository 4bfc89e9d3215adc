import re

from kb.db import get_db
from tests.conftest import PASSWORD, csrf_token, login

FAILED = "ログインIDまたはパスワードが正しくありません。"


def test_every_page_redirects_to_login_when_signed_out(client):
    for url in ("/", "/cases", "/cases/1", "/checklist", "/admin/users"):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response.headers["Location"].startswith("/login?next="), url


def test_login_page_is_japanese_with_real_labels(client):
    html = client.get("/login").get_data(as_text=True)
    assert '<html lang="ja">' in html
    assert '<label for="login">ログインID</label>' in html
    assert '<label for="password">パスワード</label>' in html


def test_correct_password_signs_in_and_shows_the_user(client, make_user):
    make_user("hanako", "staff")
    response = login(client, "hanako")
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert "hanako さん" in client.get("/").get_data(as_text=True)


def test_wrong_password_and_unknown_user_get_the_same_japanese_message(client, make_user):
    make_user("hanako", "staff")
    wrong_password = login(client, "hanako", "not-the-password")
    unknown_user = login(client, "nobody", "not-the-password")
    for response in (wrong_password, unknown_user):
        assert response.status_code == 200
        assert FAILED in response.get_data(as_text=True)

    def strip_token(html):
        return re.sub(r'value="[^"]*"', "", html)

    assert strip_token(wrong_password.get_data(as_text=True)) == \
        strip_token(unknown_user.get_data(as_text=True)).replace('"nobody"', '"hanako"')


def test_empty_fields_get_messages_next_to_them(client):
    token = csrf_token(client.get("/login").get_data(as_text=True))
    html = client.post("/login", data={"csrf_token": token, "login": "", "password": ""}) \
        .get_data(as_text=True)
    assert "ログインIDを入力してください。" in html
    assert "パスワードを入力してください。" in html


def test_deactivated_user_cannot_sign_in(client, make_user):
    make_user("gone", "staff", active=False)
    assert FAILED in login(client, "gone").get_data(as_text=True)


def test_failed_and_successful_logins_are_audited(client, make_user, app):
    make_user("hanako", "staff")
    login(client, "hanako", "wrong-password")
    login(client, "hanako")
    with app.app_context():
        actions = [row[0] for row in get_db().execute("SELECT action FROM audit_log").fetchall()]
    assert actions[-2:] == ["login_failed", "login"]


def test_logout_is_a_post_with_csrf(client, make_user):
    make_user("hanako", "staff")
    login(client, "hanako")
    assert client.get("/logout").status_code == 405
    response = client.post("/logout")  # no token
    assert response.status_code == 400
    assert "送信を受け付けられませんでした" in response.get_data(as_text=True)
    assert client.get("/").status_code == 200  # still signed in
    token = csrf_token(client.get("/").get_data(as_text=True))
    response = client.post("/logout", data={"csrf_token": token})
    assert response.status_code == 302
    assert client.get("/").status_code == 302


def test_login_without_csrf_token_is_refused_and_does_not_sign_in(client, make_user):
    make_user("hanako", "staff")
    response = client.post("/login", data={"login": "hanako", "password": PASSWORD})
    assert response.status_code == 400
    assert client.get("/").status_code == 302


def test_too_many_login_attempts_get_429_in_japanese(client):
    token = csrf_token(client.get("/login").get_data(as_text=True))
    statuses = [client.post("/login", data={"csrf_token": token, "login": "x",
                                            "password": "wrong-password"}).status_code
                for _ in range(11)]
    assert statuses[:10] == [200] * 10
    assert statuses[10] == 429
    response = client.post("/login", data={"csrf_token": token, "login": "x", "password": "y"})
    assert "試行回数が多すぎます" in response.get_data(as_text=True)
    assert client.get("/login").status_code == 200  # only attempts are limited


def test_unknown_user_id_in_session_is_logged_out_not_an_error(client):
    for stale in ("999999", "not-a-number"):
        with client.session_transaction() as session:
            session["_user_id"] = stale
            session["_fresh"] = True
        response = client.get("/cases")
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/login")


def test_deactivating_a_user_ends_their_session(client, make_user, app):
    user = make_user("hanako", "staff")
    login(client, "hanako")
    assert client.get("/").status_code == 200
    with app.app_context():
        get_db().execute("UPDATE users SET active = 0 WHERE user_id = ?", [user.user_id])
    assert client.get("/").status_code == 302


def test_next_is_followed_only_within_the_site(client, make_user):
    make_user("hanako", "staff")
    assert login(client, "hanako", next_url="/cases?kind=incident").headers["Location"] == \
        "/cases?kind=incident"
    for evil in ("//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"):
        client.post("/logout", data={"csrf_token": csrf_token(client.get("/").get_data(as_text=True))})
        assert login(client, "hanako", next_url=evil).headers["Location"] == "/", evil


def test_login_starts_a_fresh_session(client, make_user):
    make_user("hanako", "staff")
    with client.session_transaction() as session:
        session["planted"] = "by-an-attacker"
    login(client, "hanako")
    with client.session_transaction() as session:
        assert "planted" not in session
        assert session["_user_id"]
