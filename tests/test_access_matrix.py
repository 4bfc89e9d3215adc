"""Who may see and do what to a report: every role × own/other department × status.

Each cell is an exact status code; where the answer is no, the report's title must not
appear in the body (nor in search, the JSON API, the dashboard and its CSV, the checklist
pages and cards, or similar cases). A write to a report the user may not read is 404 and
changes nothing; a write they may not make to a report they read is 403.
"""

import re
import shutil

import pytest

from kb import search
from kb.db import DATABASE_FILE, get_db, utcnow
from tests.conftest import add_user, csrf_token, login, make_app

STATUSES = ("draft", "submitted", "approved", "published")
VIEWERS = ("reporter", "colleague", "manager", "other_manager", "reviewer", "trainer", "admin")
# Who reads a report in each status (everyone else gets 404).
READERS = {
    "draft": {"reporter"},
    "submitted": {"reporter", "manager", "reviewer"},
    "approved": {"reporter", "manager", "reviewer"},
    "published": set(VIEWERS),
}
# Workflow steps: {status: who may} — any other cell is 403 for a reader, 404 for the rest.
STEPS = {
    "approve": {"submitted": {"manager"}},
    "return": {"submitted": {"manager", "reviewer"}, "approved": {"reviewer"}},
    "publish": {"approved": {"reviewer"}},
}
LOGINS = {"reporter": "reporter", "colleague": "colleague", "manager": "manager",
          "other_manager": "other-manager", "reviewer": "reviewer", "trainer": "trainer",
          "admin": "admin"}


ACCOUNTS = {
    "reporter": ("staff", "kumin-koseki"), "colleague": ("staff", "kumin-koseki"),
    "manager": ("manager", "kumin-koseki"), "other_manager": ("manager", "fukushi-kourei"),
    "reviewer": ("reviewer", "soumu-gyousei-joho"), "trainer": ("trainer", "soumu-jinji"),
    "admin": ("admin", "kikaku-johoseisaku"),
}


@pytest.fixture(scope="module")
def matrix(tmp_path_factory, seeded_db_file):
    """One data folder and one set of accounts for the whole matrix; each test makes its
    own report, so the cells do not touch each other."""
    data_dir = tmp_path_factory.mktemp("matrix")
    shutil.copy(seeded_db_file, data_dir / DATABASE_FILE)
    shutil.copytree(search.index_path(seeded_db_file.parent), search.index_path(data_dir))
    app = make_app(data_dir, LOGIN_RATE_LIMIT="10000 per minute")
    people = {name: add_user(app, LOGINS[name], role, department=department)
              for name, (role, department) in ACCOUNTS.items()}
    return app, people


@pytest.fixture
def app(matrix):
    return matrix[0]


@pytest.fixture
def people(matrix):
    return matrix[1]


@pytest.fixture
def client(app):
    return app.test_client()


def report_in(app, reporter, status, title):
    with app.app_context():
        db = get_db()
        case_id = db["cases"].insert({
            "kind": "incident", "origin": "internal", "status": status, "title": title,
            "summary": f"{title}の概要", "department_id": reporter.department_id,
            "reporter_id": reporter.user_id, "task": "fax", "incident_type": "fax_missend",
            "discovered_on": "2026-10-01", "created_at": utcnow(), "updated_at": utcnow()}).last_pk
        search.index_case(search.get_index(app.config["DATA_DIR"]), db, case_id)
        return case_id


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("viewer", VIEWERS)
def test_reading_a_report(client, app, people, status, viewer):
    word = f"zz{viewer.replace('_', '')}{status}"  # one search word per cell
    title = f"行列試験 {word}"
    case_id = report_in(app, people["reporter"], status, title)
    login(client, LOGINS[viewer])
    allowed = viewer in READERS[status]
    page = client.get(f"/cases/{case_id}")
    assert page.status_code == (200 if allowed else 404)
    assert (title in page.get_data(as_text=True)) is allowed
    found = client.get("/api/search", query_string={"q": word}).get_json()
    assert (case_id in [hit["case_id"] for hit in found["hits"]]) is allowed
    listing = client.get("/cases", query_string={"q": word}).get_data(as_text=True)
    assert (title in listing) is allowed
    edit = client.get(f"/reports/{case_id}/edit")
    may_edit = viewer == "reporter" and status == "draft"
    assert edit.status_code == (200 if may_edit else 403 if allowed else 404)
    assert (title in edit.get_data(as_text=True)) is (edit.status_code == 200)


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("viewer", VIEWERS)
def test_workflow_steps(client, app, people, step, status, viewer):
    case_id = report_in(app, people["reporter"], status, f"手順試験{status}")
    login(client, LOGINS[viewer])
    token = csrf_token(client.get("/").get_data(as_text=True))
    with app.app_context():
        version = get_db().execute("SELECT version FROM cases WHERE case_id = ?",
                                   [case_id]).fetchone()[0]
    response = client.post(f"/reports/{case_id}/{step}",
                           data={"csrf_token": token, "comment": "理由", "version": version})
    allowed = viewer in STEPS[step].get(status, set())
    assert response.status_code == (302 if allowed else 403 if viewer in READERS[status] else 404)
    with app.app_context():
        now = get_db().execute("SELECT status FROM cases WHERE case_id = ?", [case_id]).fetchone()[0]
    expected = {"approve": "approved", "return": "draft", "publish": "published"}[step]
    assert now == (expected if allowed else status)


def report_with_measure(app, reporter, status, title):
    """A report (rule missing, linked to item 3-3) with an overdue countermeasure linked to 3-4."""
    case_id = report_in(app, reporter, status, title)
    with app.app_context():
        db = get_db()
        db["cases"].update(case_id, {"rule_status": "no_rule"})
        countermeasure_id = db["countermeasures"].insert({
            "case_id": case_id, "position": 0, "text": f"{title}の対策", "status": "planned",
            "due_on": "2026-01-31", "created_at": utcnow(), "updated_at": utcnow()}).last_pk
        db["case_checklist_items"].insert({"case_id": case_id, "item_code": "3-3",
                                           "created_at": utcnow()})
        db["countermeasure_checklist_items"].insert({
            "countermeasure_id": countermeasure_id, "item_code": "3-4", "created_at": utcnow()})
        search.index_case(search.get_index(app.config["DATA_DIR"]), db, case_id)
    return case_id, countermeasure_id


def snapshot(app, case_id):
    """Everything a write to the case could change."""
    with app.app_context():
        db = get_db()
        return [list(db.execute(sql, [case_id])) for sql in (
            "SELECT * FROM cases WHERE case_id = ?",
            "SELECT * FROM countermeasures WHERE case_id = ?",
            "SELECT item_code FROM case_checklist_items WHERE case_id = ?",
            "SELECT l.* FROM countermeasure_checklist_items l JOIN countermeasures m"
            " USING (countermeasure_id) WHERE m.case_id = ?",
            "SELECT * FROM comments WHERE case_id = ?",
            "SELECT * FROM pii_confirmations WHERE case_id = ?",
        )]


def write_requests(app, case_id, countermeasure_id):
    """(url, form) of every write on a report, each well-formed with the current versions,
    so that only the permission check can refuse it."""
    with app.app_context():
        db = get_db()
        version = db.execute("SELECT version FROM cases WHERE case_id = ?", [case_id]).fetchone()[0]
        measure_version = db.execute("SELECT version FROM countermeasures WHERE countermeasure_id = ?",
                                     [countermeasure_id]).fetchone()[0]
    return [
        (f"/reports/{case_id}/edit", {"action": "save", "version": version, "title": "書き換え",
                                      "summary": "書き換えた概要"}),
        (f"/reports/{case_id}/approve", {"comment": "承認", "version": version}),
        (f"/reports/{case_id}/return", {"comment": "理由", "version": version}),
        (f"/reports/{case_id}/publish", {"comment": "公開", "version": version}),
        (f"/reports/{case_id}/comments", {"comment": "横から書き込む"}),
        (f"/reports/{case_id}/pii", {"action": "confirm", "field": "summary", "text": "概要",
                                     "version": version}),
        (f"/reports/{case_id}/statutory", {"prelim_reported_on": "2026-10-05",
                                           "final_reported_on": "", "disclosure": "batch",
                                           "disclosure_reason": "", "version": version}),
        (f"/reports/countermeasures/{countermeasure_id}", {"status": "done", "case_id": case_id,
                                                           "version": measure_version}),
        (f"/checklist/links/countermeasure/{countermeasure_id}",
         {"item_codes": "1-1", "case_id": case_id, "version": measure_version}),
        (f"/checklist/links/case/{case_id}", {"item_codes": "1-1", "case_id": case_id,
                                              "version": version}),
    ]


UNREAD = [(viewer, status) for status in STATUSES for viewer in VIEWERS
          if viewer not in READERS[status]]


@pytest.mark.parametrize("viewer, status", UNREAD)
def test_writes_to_a_report_the_user_may_not_read_are_not_found_and_change_nothing(
        client, app, people, viewer, status):
    case_id, countermeasure_id = report_with_measure(app, people["reporter"], status, "書込試験")
    before = snapshot(app, case_id)
    login(client, LOGINS[viewer])
    token = csrf_token(client.get("/").get_data(as_text=True))
    answers = {url: client.post(url, data={"csrf_token": token, **form}).status_code
               for url, form in write_requests(app, case_id, countermeasure_id)}
    assert answers == {url: 404 for url in answers}
    assert snapshot(app, case_id) == before


def test_a_reviewer_cannot_link_a_draft_and_the_reporter_saves_it_afterwards(client, app, people):
    case_id, countermeasure_id = report_with_measure(app, people["reporter"], "draft", "下書き結付")
    before = snapshot(app, case_id)
    login(client, LOGINS["reviewer"])
    token = csrf_token(client.get("/").get_data(as_text=True))
    response = client.post(f"/checklist/links/case/{case_id}",
                           data={"csrf_token": token, "case_id": case_id, "item_codes": "1-1",
                                 "version": "1"})
    assert response.status_code == 404
    assert snapshot(app, case_id) == before
    reporter = app.test_client()
    login(reporter, LOGINS["reporter"])
    edit = reporter.get(f"/reports/{case_id}/edit").get_data(as_text=True)
    version = re.search(r'name="version" value="(\d+)"', edit).group(1)
    saved = reporter.post(f"/reports/{case_id}/edit", data={
        "csrf_token": csrf_token(edit), "action": "save", "version": version,
        "title": "下書き結付", "summary": "続きを書いた。"})
    assert saved.status_code == 302


DASHBOARD = {"manager", "other_manager", "reviewer", "admin"}


def usage_of(html: str, code: str) -> int:
    item = html.split(f'id="item-{code}"', 1)[1].split("</li>", 1)[0]
    return int(re.search(r"事例 (\d+)", item).group(1))


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("viewer", VIEWERS)
def test_aggregates_and_lists_show_a_report_only_to_those_who_may_read_it(
        client, app, people, viewer, status):
    title = f"集計行列{viewer.replace('_', '')}{status}"
    login(client, LOGINS[viewer])
    counted_before = usage_of(client.get("/checklist").get_data(as_text=True), "3-3")
    case_id, _ = report_with_measure(app, people["reporter"], status, title)
    published = status == "published"
    # Counts, charts and shared lists never include a draft, not even for its reporter.
    reads = viewer in READERS[status] and status != "draft"

    # The checklist overview, item pages and cards are the whole office's: published only.
    assert usage_of(client.get("/checklist").get_data(as_text=True), "3-3") == \
        counted_before + published
    for code in ("3-3", "3-4"):
        assert (title in client.get(f"/checklist/items/{code}").get_data(as_text=True)) is published
    if not published:
        with app.app_context():
            department_id = people["reporter"].department_id
        assert title not in client.get(f"/checklist/card?department={department_id}").get_data(as_text=True)
        assert title not in client.get("/checklist/card?task=fax").get_data(as_text=True)
    similar = client.get("/api/similar", query_string={"text": f"{title}の概要"}).get_json()
    assert (case_id in [hit["case_id"] for hit in similar["hits"]]) is published

    revision = client.get("/checklist/revision")
    assert revision.status_code == (200 if viewer == "reviewer" else 403)
    if viewer == "reviewer":
        assert (title in revision.get_data(as_text=True)) is reads

    if viewer in DASHBOARD:
        # A manager's dashboard is their own department's.
        sees = reads and viewer != "other_manager"
        page = client.get("/dashboard", query_string={"origin": "internal"}).get_data(as_text=True)
        assert (title in page) is sees
        backlog = client.get("/dashboard/backlog.csv", query_string={"origin": "internal"})
        assert (title in backlog.data.decode("utf-8-sig")) is sees
        assert (f"{title}の対策" in backlog.data.decode("utf-8-sig")) is sees
    else:
        assert client.get("/dashboard/backlog.csv").status_code == 403


@pytest.mark.parametrize("url", ["/admin/users", "/admin/audit", "/admin/audit.csv", "/external/import",
                                 "/checklist/revision", "/reports/deadlines", "/reports/queue/approved",
                                 "/reports/queue/submitted", "/workshops", "/dashboard",
                                 "/slips"])
@pytest.mark.parametrize("viewer", VIEWERS)
def test_role_pages(client, people, url, viewer):
    who = {
        "/admin/users": {"admin"}, "/admin/audit": {"admin"}, "/admin/audit.csv": {"admin"},
        "/external/import": {"reviewer"}, "/checklist/revision": {"reviewer"},
        "/reports/deadlines": {"reviewer"}, "/reports/queue/approved": {"reviewer"},
        "/reports/queue/submitted": {"manager", "other_manager"}, "/workshops": {"trainer"},
        "/dashboard": {"manager", "other_manager", "reviewer", "admin"},
        "/slips": {"manager", "other_manager", "admin"},  # sign-in slips for their 課 / any
    }[url]
    login(client, LOGINS[viewer])
    assert client.get(url).status_code == (200 if viewer in who else 403)


FILERS = ("reporter", "manager", "reviewer", "trainer", "admin")  # staff and every other role


@pytest.mark.parametrize("viewer", FILERS)
def test_every_role_files_a_near_miss(client, app, people, viewer):
    # Reviewer, trainer, admin and manager add powers to staff's and take none away.
    login(client, LOGINS[viewer])
    page = client.get("/reports/new/near_miss")
    assert page.status_code == 200
    saved = client.post("/reports/new/near_miss", data={
        "csrf_token": csrf_token(page.get_data(as_text=True)), "action": "save",
        "summary": f"行列で報告する{viewer}", "how_found": "送る前に読み上げた。", "task": "fax"})
    assert saved.status_code == 302
    with app.app_context():
        row = get_db().execute("SELECT reporter_id, kind, status FROM cases WHERE summary = ?",
                               [f"行列で報告する{viewer}"]).fetchone()
    assert row == (people[viewer].user_id, "near_miss", "draft")
