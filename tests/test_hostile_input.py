"""Hostile input in every field: rendered inert or refused with a message, never half-written."""

import io
import re
from html.parser import HTMLParser

import pytest

from kb import workflow
from kb.db import get_db
from tests.conftest import csrf_token, login
from tests.reporting import incident_form, near_miss_form, post_report

XSS = [
    "<script>alert('x')</script>",
    '<img src=x onerror="alert(1)">',
    "<svg onload=alert(1)>",
    "[link](javascript:alert(1))",
    "[data](data:text/html;base64,PHNjcmlwdD4=)",
    '"><iframe src=https://evil.example>',
    "<a href='https://ok.example' onclick='x()'>a</a>",
    "</textarea><script>alert(2)</script>",
    "<b>unclosed <i>html",
]
TEXT_FIELDS = ("title", "summary", "how_found", "immediate_action", "channel", "secondary_damage",
               "root_cause", "lesson", "whys-0", "countermeasures-0-text", "data_items")


class _Markup(HTMLParser):
    """Collects the live markup of a page: tags and their attributes (not escaped text)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.found = []

    def handle_starttag(self, tag, attrs):
        if tag in ("svg", "iframe", "img", "object", "embed"):
            self.found.append(tag)
        if tag == "script" and dict(attrs).get("src") != "/static/kb.js":
            self.found.append("script")
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(name)
            if name in ("href", "src", "action") and value and \
                    value.strip().lower().startswith(("javascript:", "data:")):
                self.found.append(f"{name}={value}")


def unsafe(html: str) -> list[str]:
    """Live markup that a payload could have produced."""
    parser = _Markup()
    parser.feed(html)
    return parser.found


@pytest.fixture
def office(make_user):
    return {"reporter": make_user("reporter", "staff"), "manager": make_user("boss", "manager"),
            "reviewer": make_user("checker", "reviewer", department="soumu-gyousei-joho"),
            "colleague": make_user("colleague", "staff", department="fukushi-kourei")}


@pytest.mark.parametrize("payload", XSS)
def test_xss_in_every_text_field_is_inert_on_every_page(client, app, office, payload):
    form = incident_form(**{field: f"{payload} {field}" for field in TEXT_FIELDS})
    form["title"] = f"攻撃 {payload}"[:120]
    form["data_items"] = payload[:40]  # one item of at most 40 characters
    login(client, "reporter")
    response = post_report(client, "/reports/new/incident", form)
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    case_id = int(re.search(r"/reports/(\d+)/edit", response.headers["Location"]).group(1))
    edit_page = client.get(f"/reports/{case_id}/edit").get_data(as_text=True)
    assert not unsafe(edit_page), payload
    with app.app_context():
        db = get_db()
        workflow.submit_report(db, office["reporter"], case_id, pii_acknowledged=True)
        workflow.approve_report(db, office["manager"], case_id)
        workflow.publish_report(db, office["reviewer"], case_id)
    login_as = [("colleague", [f"/cases/{case_id}", "/cases?q=攻撃", "/cases?origin=internal"]),
                ("reporter", ["/reports/mine"])]
    for who, urls in login_as:
        client.post("/logout", data={"csrf_token": csrf_token(client.get("/").get_data(as_text=True))})
        login(client, who)
        for url in urls:
            html = client.get(url).get_data(as_text=True)
            assert not unsafe(html), (url, payload)


def test_sql_looking_text_is_stored_as_written(client, app, office):
    text = "'; DROP TABLE cases; -- \" OR 1=1 /*"
    login(client, "reporter")
    response = post_report(client, "/reports/new/near_miss", near_miss_form(summary=text))
    case_id = int(re.search(r"/reports/(\d+)/edit", response.headers["Location"]).group(1))
    with app.app_context():
        db = get_db()
        assert db.execute("SELECT summary FROM cases WHERE case_id = ?", [case_id]).fetchone()[0] == text
        assert db.execute("SELECT count(*) FROM cases").fetchone()[0] > 180
    assert client.get("/cases?q=" + text).status_code == 200


def test_control_characters_are_removed(client, app, office):
    login(client, "reporter")
    response = post_report(client, "/reports/new/near_miss",
                           near_miss_form(summary="封入\x00前に\x07気づいた\u202e。\r\n二行目"))
    case_id = int(re.search(r"/reports/(\d+)/edit", response.headers["Location"]).group(1))
    with app.app_context():
        assert get_db().execute("SELECT summary FROM cases WHERE case_id = ?", [case_id]).fetchone()[0] \
            == "封入前に気づいた。\n二行目"


@pytest.mark.parametrize("markdown", ["- " * 3000 + "x", ">" * 3000 + " x", "[" * 3000 + "x" + "]" * 3000,
                                      "*" * 4000 + "x" + "*" * 4000])
def test_deeply_nested_markdown_renders_without_failing(client, app, office, markdown):
    login(client, "reporter")
    response = post_report(client, "/reports/new/near_miss", near_miss_form(summary=markdown[:3990]))
    case_id = int(re.search(r"/reports/(\d+)/edit", response.headers["Location"]).group(1))
    assert client.get(f"/cases/{case_id}").status_code == 200


def test_over_long_fields_are_refused_and_nothing_is_written(client, app, office):
    login(client, "reporter")
    with app.app_context():
        before = get_db()["cases"].count
    response = post_report(client, "/reports/new/incident",
                           incident_form(summary="あ" * 100_000, lesson="い" * 5000))
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "何が起きたかは4,000文字以内にしてください" in html and "教訓は200文字以内" in html
    with app.app_context():
        assert get_db()["cases"].count == before


def test_invalid_utf8_upload_gets_a_message(client, signed_in, app):
    signed_in("reviewer", department="soumu-gyousei-joho")
    token = csrf_token(client.get("/external/import").get_data(as_text=True))
    data = b"\xff\xfe\x00\x00\x80\x81\xfe\xfd" * 100
    response = client.post("/external/import", data={"csrf_token": token, "file": (io.BytesIO(data), "x.csv")},
                           content_type="multipart/form-data")
    assert response.status_code == 422
    assert "文字コードを読み取れません" in response.get_data(as_text=True)


def test_hostile_search_queries_are_harmless(client, signed_in):
    signed_in("staff")
    for query in ("<script>alert(1)</script>", "' OR 1=1 --", "\x00\x01", "(" * 500, "*:*"):
        response = client.get("/cases", query_string={"q": query})
        assert response.status_code == 200
        assert not unsafe(response.get_data(as_text=True))


def test_the_markup_detector_itself_catches_live_payloads():
    assert unsafe('<p><img src=x onerror="alert(1)"></p>') == ["img", "onerror"]
    assert unsafe('<a href="javascript:alert(1)">x</a>') == ["href=javascript:alert(1)"]
    assert unsafe("<p>&lt;script&gt;alert(1)&lt;/script&gt; onload=</p>") == []
