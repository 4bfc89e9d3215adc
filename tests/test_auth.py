import re

from kb import users
from kb.db import get_db
from tests.conftest import PASSWORD, csrf_token, login, make_app, post_form

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


# --- every session of a user ends at sign-out, password reset and deactivation ----------

def _session_cookie(client) -> str:
    return client.get_cookie("kb_session").value


def _client_with_cookie(app, cookie: str):
    """Another browser, given a copy of a session cookie (as if captured or left behind)."""
    other = app.test_client()
    other.set_cookie("kb_session", cookie)
    return other


def test_a_session_cookie_copied_before_sign_out_no_longer_signs_in(app, client, make_user):
    make_user("hanako", "staff")
    login(client, "hanako")
    copied = _session_cookie(client)
    assert _client_with_cookie(app, copied).get("/").status_code == 200
    client.post("/logout", data={"csrf_token": csrf_token(client.get("/").get_data(as_text=True))})
    response = _client_with_cookie(app, copied).get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_signing_out_in_one_browser_ends_the_session_in_another(app, make_user):
    make_user("hanako", "staff")
    office, home = app.test_client(), app.test_client()
    login(office, "hanako")
    login(home, "hanako")
    office.post("/logout", data={"csrf_token": csrf_token(office.get("/").get_data(as_text=True))})
    assert home.get("/").status_code == 302
    assert login(home, "hanako").status_code == 302  # signing in again works
    assert home.get("/").status_code == 200


def test_a_password_reset_by_an_admin_ends_the_users_sessions(app, make_user):
    user = make_user("hanako", "staff")
    make_user("admin-user", "admin")
    hanako, admin = app.test_client(), app.test_client()
    login(hanako, "hanako")
    copied = _session_cookie(hanako)
    login(admin, "admin-user")
    response = post_form(admin, f"/admin/users/{user.user_id}", {
        "display_name": user.display_name, "department_id": str(user.department_id),
        "roles": ["staff"], "active": "y", "password": "a-brand-new-password"})
    assert response.status_code == 302, response.get_data(as_text=True)
    assert hanako.get("/").status_code == 302
    assert _client_with_cookie(app, copied).get("/").status_code == 302
    assert admin.get("/").status_code == 200  # the admin's own session is not affected
    assert login(hanako, "hanako", "a-brand-new-password").status_code == 302


def test_a_session_from_before_a_deactivation_stays_ended_after_reactivation(app, client, make_user):
    user = make_user("hanako", "staff")
    login(client, "hanako")
    copied = _session_cookie(client)
    with app.app_context():
        for active in (False, True):
            users.update_user(get_db(), users.SYSTEM, user.user_id, display_name=user.display_name,
                              department_id=user.department_id, roles=user.roles, active=active)
    assert _client_with_cookie(app, copied).get("/").status_code == 302


def test_a_session_without_a_generation_is_signed_out(client, make_user):
    user = make_user("hanako", "staff")
    with client.session_transaction() as session:
        session["_user_id"] = str(user.user_id)  # as issued before sessions had generations
        session["_fresh"] = True
    assert client.get("/").status_code == 302


# --- the sign-in rate limit counts failures, per login id and per address ---------------

def _attempt(client, login_id, password, address="192.0.2.10", **headers):
    token = csrf_token(client.get("/login").get_data(as_text=True))
    return client.post("/login", data={"csrf_token": token, "login": login_id, "password": password},
                       environ_base={"REMOTE_ADDR": address}, headers=headers)


def _sign_out(client):
    client.post("/logout", data={"csrf_token": csrf_token(client.get("/").get_data(as_text=True))})


def test_successful_sign_ins_from_one_address_do_not_lock_out_the_next_person(client, make_user):
    for n in range(11):
        make_user(f"colleague{n}", "staff")
    for n in range(11):
        assert _attempt(client, f"colleague{n}", PASSWORD).status_code == 302, n
        _sign_out(client)


def test_failed_sign_ins_are_limited_per_login_id_from_any_address(client, make_user):
    make_user("hanako", "staff")
    make_user("taro", "staff")
    for n in range(10):
        assert _attempt(client, "hanako", "wrong-password", address=f"198.51.100.{n}").status_code == 200
    response = _attempt(client, "hanako", PASSWORD, address="198.51.100.99")
    assert response.status_code == 429
    assert "試行回数が多すぎます" in response.get_data(as_text=True)
    assert _attempt(client, "taro", PASSWORD, address="198.51.100.99").status_code == 302


def test_the_login_id_limit_is_not_escaped_by_changing_case_or_blanks(client, make_user):
    """Login ids match whatever their case (the column is COLLATE NOCASE): 「HANAKO」 and
    「 Hanako 」 sign in as hanako, so they must count against hanako's limit too."""
    make_user("hanako", "staff")
    variants = ["HANAKO", "Hanako", "hAnako", " hanako", "haNako ", "hanaKO", "HAnako", "hanakO",
                "HaNaKo", "hanako"]
    for n, variant in enumerate(variants):
        assert _attempt(client, variant, "wrong-password", address=f"198.51.100.{n}").status_code == 200
    assert _attempt(client, "hanako", PASSWORD, address="198.51.100.99").status_code == 429


def test_failed_sign_ins_are_limited_per_address_across_login_ids(client, make_user):
    make_user("hanako", "staff")
    for n in range(10):
        assert _attempt(client, f"guess{n}", "wrong-password", address="203.0.113.5").status_code == 200
    assert _attempt(client, "hanako", PASSWORD, address="203.0.113.5").status_code == 429
    assert _attempt(client, "hanako", PASSWORD, address="203.0.113.6").status_code == 302


def test_forwarded_addresses_are_ignored_without_a_trusted_proxy(client):
    statuses = [_attempt(client, f"guess{n}", "wrong-password", address="192.0.2.1",
                         **{"X-Forwarded-For": f"10.0.0.{n}"}).status_code for n in range(11)]
    assert statuses == [200] * 10 + [429]


def test_behind_a_trusted_proxy_each_office_pc_has_its_own_counter(data_dir, make_user):
    app = make_app(data_dir, TRUSTED_PROXIES=1)
    make_user("hanako", "staff")
    client = app.test_client()
    for n in range(10):
        assert _attempt(client, f"guess{n}", "wrong-password", address="192.0.2.1",
                        **{"X-Forwarded-For": "10.0.0.66"}).status_code == 200
    assert _attempt(client, "guess-more", "wrong-password", address="192.0.2.1",
                    **{"X-Forwarded-For": "10.0.0.66"}).status_code == 429
    assert _attempt(client, "hanako", PASSWORD, address="192.0.2.1",
                    **{"X-Forwarded-For": "10.0.0.7"}).status_code == 302
