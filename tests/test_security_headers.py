from tests.conftest import login


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
