from tests.conftest import add_user, login, make_app


def test_security_headers_on_the_login_page(client):
    response = client.get("/login")
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["Cache-Control"] == "no-store"


def test_security_headers_on_signed_in_pages_and_errors(client, make_user):
    make_user("hanako", "staff")
    login(client, "hanako")
    for url in ("/", "/cases", "/checklist", "/no-such-page"):
        response = client.get(url)
        assert "Content-Security-Policy" in response.headers, url
        assert response.headers["Cache-Control"] == "no-store", url


def test_session_cookie_is_httponly_and_samesite_lax(client, make_user):
    make_user("hanako", "staff")
    cookie = login(client, "hanako").headers["Set-Cookie"]
    assert "kb_session=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


def test_pages_use_no_inline_script_or_style(client, make_user):
    # The CSP forbids inline code; a page relying on it would silently break.
    make_user("hanako", "staff", "admin")
    login(client, "hanako")
    for url in ("/login", "/", "/?task=fax", "/cases", "/cases/1", "/checklist", "/admin/users",
                "/admin/users/new", "/admin/audit"):
        html = client.get(url).get_data(as_text=True)
        assert "<script>" not in html and "style=" not in html and "<style" not in html, url


def test_static_files_are_served_locally(client):
    assert client.get("/static/kb.css").status_code == 200
    assert client.get("/static/kb.js").status_code == 200



def test_unexpected_error_gets_a_japanese_500_page(data_dir):
    app = make_app(data_dir, PROPAGATE_EXCEPTIONS=False)

    @app.route("/boom")
    def boom():
        raise RuntimeError("simulated failure")

    add_user(app, "hanako", "staff")
    client = app.test_client()
    login(client, "hanako")
    response = client.get("/boom")
    assert response.status_code == 500
    html = response.get_data(as_text=True)
    assert "システムエラーが発生しました" in html
    assert "simulated failure" not in html
    assert "Content-Security-Policy" in response.headers



def test_method_not_allowed_is_a_japanese_page(client, make_user):
    make_user("hanako", "staff")
    login(client, "hanako")
    response = client.get("/logout")
    assert response.status_code == 405
    assert "この操作は受け付けられません" in response.get_data(as_text=True)
