"""The demo reports of `init --demo` (issue #15): every workflow state, countermeasures at
every stage, a reportable incident, comments, checklist links, no personal data, once only;
and the pages a newcomer opens first show them."""

import re
from datetime import timedelta

import pytest
from flask import current_app

from kb import checklist, dashboard, dates, demo_reports, pii, reports, search, users, workflow
from kb.db import get_db
from tests.conftest import csrf_token, make_app

TABLES = ("cases", "comments", "countermeasures", "countermeasure_checklist_items",
          "case_checklist_items", "audit_log", "pii_confirmations")


def _snapshot(app) -> dict:
    with app.app_context():
        db = get_db()
        return {table: db.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()
                for table in TABLES}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """One data folder after `init --demo` run twice: (app, first output, second output,
    passwords, whether the second run changed nothing, the office's day it was made on —
    what a test that asks the core about "today" passes, as the run may cross midnight)."""
    app = make_app(tmp_path_factory.mktemp("demo"))
    runner = app.test_cli_runner()
    made_on = dates.office_today()
    first = runner.invoke(args=["init", "--demo"])
    assert first.exit_code == 0, first.output
    before = _snapshot(app)
    second = runner.invoke(args=["init", "--demo"])
    assert second.exit_code == 0, second.output
    unchanged = _snapshot(app) == before
    passwords = dict(re.findall(r"^  (demo-\S+)\s+(\S+)", first.output, re.MULTILINE))
    return app, first.output, second.output, passwords, unchanged, made_on


@pytest.fixture
def demo_db(demo):
    with demo[0].app_context():
        yield get_db()


def _demo_cases(db) -> list[dict]:
    return db.execute_returning_dicts(
        "SELECT * FROM cases WHERE origin = 'internal' AND title LIKE ? ORDER BY case_id",
        [demo_reports.DEMO_MARK + "%"])


def _user(db, login):
    return users.get_user(db, db.execute("SELECT user_id FROM users WHERE login = ?",
                                         [login]).fetchone()[0])


def test_demo_reports_cover_every_workflow_state_both_kinds_and_eight_departments(demo, demo_db):
    rows = _demo_cases(demo_db)
    assert 35 <= len(rows) <= 45
    by_state = {state: sum(row["status"] == state for row in rows)
                for state in ("draft", "submitted", "approved", "published")}
    assert all(count >= 3 for count in by_state.values()), by_state
    incidents = sum(row["kind"] == "incident" for row in rows)
    assert 5 <= incidents < len(rows) - incidents  # mostly near-misses, as in life
    assert sum(row["anonymous"] for row in rows) >= 2
    assert len({row["department_id"] for row in rows}) == 8
    returned = demo_db.execute(
        "SELECT c.status FROM comments k JOIN cases c USING (case_id)"
        " WHERE k.action = 'return' AND c.title LIKE '【デモ】%'").fetchall()
    assert {"draft", "published"} <= {row[0] for row in returned}  # still returned; fixed and on
    assert re.search(rf"demo reports: {len(rows)} \({incidents} incidents; "
                     rf"{by_state['draft']} drafts, {by_state['submitted']} submitted, "
                     rf"{by_state['approved']} approved, {by_state['published']} published\)",
                     demo[1])
    # Filed by the demo roster's people and approved by their 所属長, over the last year.
    reporters = {row["reporter_id"] for row in rows}
    assert len(reporters) > 20
    days = sorted(row["occurred_on"] or row["discovered_on"] for row in rows)
    assert days[0] >= (dates.office_today() - timedelta(days=366)).isoformat()
    assert days[-1] < dates.office_today().isoformat()
    assert len({day[:7] for day in days}) >= 10
    for row in rows:
        assert row["created_at"][:10] <= (row["submitted_at"] or "9")[:10] \
               <= (row["approved_at"] or "9")[:10] <= (row["published_at"] or "9")[:10]
        if row["status"] == "published":
            assert row["published_at"] < dates.office_today().isoformat()


def test_demo_countermeasures_are_done_in_progress_and_overdue(demo_db):
    today = dates.office_today().isoformat()
    rows = demo_db.execute_returning_dicts(
        "SELECT m.status, m.due_on FROM countermeasures m JOIN cases c USING (case_id)"
        " WHERE c.title LIKE '【デモ】%'")
    statuses = {row["status"] for row in rows}
    assert statuses == {"planned", "in_progress", "done"}
    overdue = [row for row in rows if row["status"] != "done" and row["due_on"] < today]
    assert len(overdue) >= 3 and {"planned", "in_progress"} <= {row["status"] for row in overdue}
    reviewer = _user(demo_db, "demo-reviewer")
    backlog = dashboard.collect(demo_db, reviewer, dashboard.parse_filters(reviewer))["backlog"]
    assert sum(row["overdue"] for row in backlog if row["title"].startswith("【デモ】")) >= 3


def test_demo_has_a_reported_incident_and_one_whose_deadline_is_near(demo, demo_db):
    reviewer = _user(demo_db, "demo-reviewer")
    reported = demo_db.execute_returning_dicts(
        "SELECT * FROM cases WHERE title LIKE '【デモ】%' AND prelim_reported_on IS NOT NULL"
        " AND final_reported_on IS NOT NULL AND status = 'published'")
    assert reported and all(row["prelim_reported_on"] < row["final_reported_on"] for row in reported)
    due = [row for row in workflow.deadlines(demo_db, reviewer, today=demo[5])
           if row["title"].startswith("【デモ】")]
    assert due and all(row["assessment"].reportable for row in due)
    assert any(0 <= row["days_left"] <= 7 for row in due)
    assert not any(row["overdue"] for row in due)


def test_demo_reports_carry_questions_and_answers_between_reviewers_and_departments(demo_db):
    reviewer = _user(demo_db, "demo-reviewer")
    threads = demo_db.execute(
        "SELECT k.case_id, k.user_id = ?, k.created_at, c.created_at FROM comments k"
        " JOIN cases c USING (case_id) WHERE c.title LIKE '【デモ】%' AND k.action IS NULL"
        " ORDER BY k.comment_id", [reviewer.user_id]).fetchall()
    by_case: dict[int, list[bool]] = {}
    for case_id, by_reviewer, said, filed in threads:
        by_case.setdefault(case_id, []).append(bool(by_reviewer))
        assert filed <= said < dates.office_today().isoformat()
    answered = [case_id for case_id, who in by_case.items() if who[0] and False in who]
    assert len(answered) >= 5


def test_demo_reports_are_linked_to_checklist_items_and_fill_the_usage_bars(demo_db):
    links = demo_db.execute(
        "SELECT count(*) FROM case_checklist_items i JOIN cases c USING (case_id)"
        " WHERE c.title LIKE '【デモ】%'").fetchone()[0]
    measure_links = demo_db.execute(
        "SELECT count(*) FROM countermeasure_checklist_items l JOIN countermeasures m"
        " USING (countermeasure_id) JOIN cases c USING (case_id) WHERE c.title LIKE '【デモ】%'"
    ).fetchone()[0]
    assert links >= 30 and measure_links >= 15
    usage = checklist.item_usage(demo_db)
    # Before the demo no published case touched an item (the seed cases are not linked).
    assert sum(1 for counts in usage.values() if counts["cases"]) >= 20
    assert usage["3-3"]["cases"] >= 2 and usage["3-3"]["countermeasures"] >= 1


def test_no_field_or_comment_of_a_demo_report_looks_like_personal_data(demo_db):
    scanned = 0
    for row in _demo_cases(demo_db):
        report = reports.report_from_case(demo_db, row["case_id"])
        texts = reports.report_texts(report)
        texts += [("comment", body) for (body,) in demo_db.execute(
            "SELECT body FROM comments WHERE case_id = ?", [row["case_id"]])]
        for field, text in texts:
            assert pii.scan(text) == [], (row["title"], field, text)
            scanned += 1
    assert scanned > 300
    assert demo_db.execute("SELECT count(*) FROM pii_confirmations").fetchone()[0] == 0


def test_a_second_init_demo_changes_nothing_and_says_so(demo):
    _, _, second, _, unchanged, _ = demo
    assert "demo reports: already created" in second
    assert unchanged


def test_init_without_demo_creates_no_demo_report(db):
    assert db.execute("SELECT count(*) FROM cases WHERE origin = 'internal'").fetchone()[0] == 0


def test_demo_reports_are_in_the_search_index_after_init(demo, demo_db):
    index = search.get_index(current_app.config["DATA_DIR"])
    assert search.check(index, demo_db) == {"missing": [], "stale": [], "orphaned": []}
    hits = search.search_cases(index, demo_db, users.READER, "短縮ダイヤル 登録").hits
    published = {row["case_id"] for row in _demo_cases(demo_db) if row["status"] == "published"}
    assert {hit["case_id"] for hit in hits} & published


def _signed_in(app, login_id, password):
    client = app.test_client()
    token = csrf_token(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"csrf_token": token, "login": login_id,
                                           "password": password})
    assert response.status_code == 302
    return client


def test_the_first_pages_of_the_demo_reviewer_and_manager_are_filled(demo):
    app, _, _, passwords, _, _ = demo
    reviewer = _signed_in(app, "demo-reviewer", passwords["demo-reviewer"])
    waiting = reviewer.get("/reports/queue/approved").get_data(as_text=True)
    assert waiting.count("【デモ】") >= 5
    page = reviewer.get("/dashboard").get_data(as_text=True)
    assert "戸籍住民課" in page and "生活福祉課" in page and "【デモ】" in page  # backlog
    revision = reviewer.get("/checklist/revision").get_data(as_text=True)
    assert revision.count("【デモ】") >= 3
    deadlines = reviewer.get("/reports/deadlines").get_data(as_text=True)
    assert "【デモ】口座振替の案内メール" in deadlines
    usage = reviewer.get("/checklist").get_data(as_text=True)
    assert re.search(r"事例\s*[1-9]", usage)
    fax = reviewer.get("/?task=fax").get_data(as_text=True)
    assert "【デモ】" in fax

    manager = _signed_in(app, "demo-manager", passwords["demo-manager"])
    queue = manager.get("/reports/queue/submitted").get_data(as_text=True)
    assert queue.count("【デモ】") >= 3
    assert "戸籍住民課" in manager.get("/dashboard").get_data(as_text=True)
