"""Who may see and do what to a report: every role × own/other department × status.

Each cell is an exact status code; where the answer is no, the report's title must not
appear in the body (nor in search, the JSON API or the dashboard CSV).
"""

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
# Workflow steps: {status: who may} — any other cell is 403.
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
    assert edit.status_code == (200 if viewer == "reporter" and status == "draft" else 403)
    assert (title in edit.get_data(as_text=True)) is (edit.status_code == 200)


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("viewer", VIEWERS)
def test_workflow_steps(client, app, people, step, status, viewer):
    case_id = report_in(app, people["reporter"], status, f"手順試験{status}")
    login(client, LOGINS[viewer])
    token = csrf_token(client.get("/").get_data(as_text=True))
    response = client.post(f"/reports/{case_id}/{step}", data={"csrf_token": token, "comment": "理由"})
    allowed = viewer in STEPS[step].get(status, set())
    assert response.status_code == (302 if allowed else 403)
    with app.app_context():
        now = get_db().execute("SELECT status FROM cases WHERE case_id = ?", [case_id]).fetchone()[0]
    expected = {"approve": "approved", "return": "draft", "publish": "published"}[step]
    assert now == (expected if allowed else status)


@pytest.mark.parametrize("viewer, code", [("reporter", 403), ("colleague", 403), ("trainer", 403),
                                          ("manager", 200), ("other_manager", 200), ("reviewer", 200),
                                          ("admin", 200)])
def test_dashboard_csv_by_role_shows_only_what_the_role_may_see(client, app, people, viewer, code):
    report_in(app, people["reporter"], "submitted", "集計試験")  # 戸籍住民課
    login(client, LOGINS[viewer])
    response = client.get("/dashboard/departments.csv")
    assert response.status_code == code
    if code == 200:
        text = response.data.decode("utf-8-sig")
        sees_koseki = "戸籍住民課" in text
        assert sees_koseki is (viewer in ("manager", "reviewer", "admin"))


@pytest.mark.parametrize("url", ["/admin/users", "/admin/audit", "/admin/audit.csv", "/external/import",
                                 "/checklist/revision", "/reports/deadlines", "/reports/queue/approved",
                                 "/reports/queue/submitted", "/workshops", "/dashboard"])
@pytest.mark.parametrize("viewer", VIEWERS)
def test_role_pages(client, people, url, viewer):
    who = {
        "/admin/users": {"admin"}, "/admin/audit": {"admin"}, "/admin/audit.csv": {"admin"},
        "/external/import": {"reviewer"}, "/checklist/revision": {"reviewer"},
        "/reports/deadlines": {"reviewer"}, "/reports/queue/approved": {"reviewer"},
        "/reports/queue/submitted": {"manager", "other_manager"}, "/workshops": {"trainer"},
        "/dashboard": {"manager", "other_manager", "reviewer", "admin"},
    }[url]
    login(client, LOGINS[viewer])
    assert client.get(url).status_code == (200 if viewer in who else 403)
