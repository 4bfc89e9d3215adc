"""Hostile input in every field: rendered inert or refused with a message, never half-written."""

import io
import re
from html import unescape
from html.parser import HTMLParser

import pytest

from kb import workflow, workshops
from kb.db import get_db
from kb.security import is_safe_next
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


@pytest.mark.parametrize("line, message", [
    ("[" * 200_000, "入れ子（[ や {）が深すぎて"),
    ('{"id": "x", "title": "t", "municipality": "m", "affected_count": ' + "9" * 5000 + "}", "桁数が多すぎる数"),
    ('{"id": "x", "title": "t", "municipality": "m", "incident_type": "other", "affected_count": 1e400}',
     "人数は0以上の整数"),
    ('{"id": "x", "title": "t", "municipality": "m", "incident_type": "other", "affected_count": '
     + "9" * 30 + "}", "人数が大きすぎます"),
], ids=["nested", "long-number", "infinity", "overflow"])
def test_a_hostile_json_upload_gets_a_message_with_its_line(client, signed_in, app, line, message):
    signed_in("reviewer", department="soumu-gyousei-joho")
    with app.app_context():
        before = get_db()["cases"].count
    token = csrf_token(client.get("/external/import").get_data(as_text=True))
    response = client.post("/external/import", data={
        "csrf_token": token, "file": (io.BytesIO(line.encode()), "cases.jsonl")},
        content_type="multipart/form-data")
    assert response.status_code == 422
    html = unescape(response.get_data(as_text=True))
    assert "1行目" in html and message in html
    with app.app_context():
        assert get_db()["cases"].count == before


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


@pytest.mark.parametrize("target", [
    None, "", "//evil.example", "/\t/evil.example/", "/\n/evil.example", "/\r\n/evil.example",
    "/\\evil.example", "\\\\evil.example", "/\\/evil.example", "\x01/evil", "/\x01/evil.example",
    "/\x7f/evil", "\t//evil.example", " //evil.example", "https://evil.example/", "javascript:alert(1)",
    "evil.example", "///evil.example",
])
def test_redirect_targets_that_could_leave_the_site_are_refused(target):
    assert not is_safe_next(target)


@pytest.mark.parametrize("target", ["/", "/cases/3", "/cases?q=%E8%AA%A4%E9%80%81%E4%BF%A1&origin=internal",
                                    "/workshops/1#case-2", "/cases?q=a//b"])
def test_paths_on_this_site_are_accepted_as_redirect_targets(target):
    assert is_safe_next(target)


@pytest.fixture
def trainer_workshop(app, make_user):
    trainer = make_user("trainer", "trainer", department="soumu-jinji")
    with app.app_context():
        db = get_db()
        case_id = db.execute("SELECT case_id FROM cases WHERE status = 'published' LIMIT 1").fetchone()[0]
        workshop_id = workshops.create_workshop(db, trainer, title="FAX研修", held_on="")
    return workshop_id, case_id


@pytest.mark.parametrize("back", ["/\t/evil.example/", "//evil.example/", "/\\evil.example", "https://evil.example/",
                                  "/\n/evil.example"])
def test_workshop_back_redirect_stays_on_the_site(client, trainer_workshop, back):
    workshop_id, case_id = trainer_workshop
    login(client, "trainer")
    token = csrf_token(client.get(f"/cases/{case_id}").get_data(as_text=True))
    for workshop in (workshop_id, ""):  # added, and the "choose a workshop" message
        response = client.post("/workshops/add", data={"csrf_token": token, "workshop_id": workshop,
                                                       "case_id": case_id, "back": back})
        assert response.status_code == 302
        assert response.headers["Location"] == "/"


def test_workshop_back_redirect_returns_to_the_search_it_came_from(client, trainer_workshop):
    workshop_id, case_id = trainer_workshop
    login(client, "trainer")
    token = csrf_token(client.get(f"/cases/{case_id}").get_data(as_text=True))
    back = "/cases?q=fax&sort=date"
    response = client.post("/workshops/add", data={"csrf_token": token, "workshop_id": workshop_id,
                                                   "case_id": case_id, "back": back})
    assert response.headers["Location"] == back


def test_search_links_are_built_from_the_parsed_filters_only(client, signed_in):
    signed_in("staff")
    response = client.get("/cases", query_string={
        "origin": "external", "sort": "date", "endpoint": "x", "_external": "1", "_scheme": "https",
        "_anchor": "x", "_method": "POST", "kind": "bogus"})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    links = [unescape(href) for href in re.findall(r'href="([^"]*/cases\?[^"]*)"', html)]
    assert len(links) > 10  # facets, the chip, the next page
    for link in links:
        assert link.startswith("/cases?") and "#" not in link, link
        assert not re.search(r"[?&](endpoint|_external|_scheme|_anchor|_method)=", link), link
        assert "kind=bogus" not in link, link
    next_page = unescape(re.search(r'<a rel="next" href="([^"]+)"', html).group(1))
    assert sorted(next_page.split("?")[1].split("&")) == ["origin=external", "page=2", "sort=date"]
    assert "/cases?sort=date" in links  # the chip that removes 出所 keeps the sort


@pytest.mark.parametrize("name", ["endpoint", "_external", "_scheme", "_anchor", "_method"])
def test_search_with_a_reserved_parameter_name_answers_normally(client, signed_in, name):
    signed_in("staff")
    response = client.get("/cases", query_string={"q": "fax", "origin": "external", name: "1"})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "http://localhost" not in html and "#1" not in html
