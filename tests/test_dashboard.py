"""集計 against hand-counted fixtures, its filters, permissions and CSV files."""

import csv
import io
from datetime import date

import pytest

from kb import dashboard
from kb.db import get_db
from kb.exceptions import Forbidden, Invalid
from tests.conftest import login


def department(db, code):
    return db.execute("SELECT department_id FROM departments WHERE code = ?", [code]).fetchone()[0]


@pytest.fixture
def reports(app, make_user):
    """Internal reports, counted by hand:

    戸籍住民課: 2 incidents (2026-01, 2026-02), 1 near-miss (2026-02), 1 draft near-miss (not counted)
    保育課:     1 incident (2026-02), 0 near-misses  → under-reporting
    高齢福祉課: 0 incidents, 2 near-misses (2026-03)
    """
    reporter = make_user("reporter", "staff")
    with app.app_context():
        db = get_db()
        koseki, hoiku, kourei = (department(db, c) for c in ("kumin-koseki", "kodomo-hoiku", "fukushi-kourei"))
        rows = [
            (koseki, "incident", "submitted", "2026-01-10", "fax", "fax_missend", "no_rule"),
            (koseki, "incident", "published", "2026-02-03", "postal", "postal_misdelivery", "followed_but_missed"),
            (koseki, "near_miss", "approved", "2026-02-20", "fax", None, None),
            (koseki, "near_miss", "draft", "2026-02-21", "fax", None, None),
            (hoiku, "incident", "published", "2026-02-14", "email", "email_missend", "no_rule"),
            (kourei, "near_miss", "submitted", "2026-03-01", "counter", None, None),
            (kourei, "near_miss", "published", "2026-03-05", "phone", None, None),
        ]
        ids = []
        for dept, kind, status, day, task, kind_type, rule in rows:
            ids.append(db["cases"].insert({
                "kind": kind, "origin": "internal", "status": status, "title": f"{kind} {day}",
                "department_id": dept, "reporter_id": reporter.user_id, "occurred_on": day,
                "task": task, "incident_type": kind_type, "rule_status": rule,
                "created_at": "2026-03-10", "updated_at": "2026-03-10"}).last_pk)
        db["countermeasures"].insert_all([
            {"case_id": ids[0], "position": 0, "text": "期限切れの対策", "status": "planned",
             "due_on": "2026-02-01", "created_at": "x", "updated_at": "x"},
            {"case_id": ids[1], "position": 0, "text": "まだ先の対策", "status": "in_progress",
             "due_on": "2026-12-31", "created_at": "x", "updated_at": "x"},
            {"case_id": ids[1], "position": 1, "text": "済んだ対策", "status": "done",
             "due_on": "2026-01-31", "created_at": "x", "updated_at": "x"},
        ])
        db["case_checklist_items"].insert_all([
            {"case_id": ids[0], "item_code": "3-3", "created_at": "x"},
            {"case_id": ids[4], "item_code": "3-3", "created_at": "x"},
            {"case_id": ids[4], "item_code": "4-1", "created_at": "x"},
        ])
    return ids


def collect(app, actor, today=date(2026, 3, 15), **filters):
    with app.app_context():
        return dashboard.collect(get_db(), actor, dashboard.parse_filters(actor, **filters), today=today)


def test_a_near_miss_filed_without_its_day_counts_in_the_month_it_was_filed(app, make_user):
    """The day is optional on the near-miss form: such a near-miss is dated by the day it
    was filed (first saved), on the office's clock (01:25 JST on 1 March is 28 February in
    UTC) — not by its submission, which a return and resubmission would move."""
    reporter = make_user("quick", "staff", department="kumin-koseki")
    with app.app_context():
        db = get_db()
        db["cases"].insert({
            "kind": "near_miss", "origin": "internal", "status": "submitted", "title": "日付なし",
            "department_id": reporter.department_id, "reporter_id": reporter.user_id,
            "task": "fax", "created_at": "2026-02-28T16:25:00+00:00",
            "updated_at": "2026-04-02T01:00:00+00:00", "submitted_at": "2026-04-02T01:00:00+00:00"})
        db["cases"].insert({  # another municipality's case without any date: undated
            "kind": "incident", "origin": "external", "status": "published", "title": "日付なし",
            "external_id": "ext-undated", "municipality": "テスト町", "incident_type": "other",
            "created_at": "2026-03-10T00:00:00+00:00", "updated_at": "2026-03-10T00:00:00+00:00"})
    reviewer = make_user("checker", "reviewer", department="soumu-gyousei-joho")
    assert collect(app, reviewer, origin="internal")["months"] == [
        {"month": "2026-03", "incidents": 0, "near_misses": 1}]
    months = collect(app, reviewer, origin="both", start="2026/01/01")["months"]
    assert months == [{"month": "2026-03", "incidents": 0, "near_misses": 1}]  # ext-undated: none
    assert collect(app, reviewer, origin="internal", end="2026/02/28")["months"] == []


def test_internal_counts_match_the_hand_count(app, make_user, reports):
    reviewer = make_user("checker", "reviewer", department="soumu-gyousei-joho")
    data = collect(app, reviewer, origin="internal")
    assert data["months"] == [
        {"month": "2026-01", "incidents": 1, "near_misses": 0},
        {"month": "2026-02", "incidents": 2, "near_misses": 1},
        {"month": "2026-03", "incidents": 0, "near_misses": 2},
    ]
    by_department = {row["department"]: row for row in data["departments"]}
    assert (by_department["戸籍住民課"]["incidents"], by_department["戸籍住民課"]["near_misses"]) == (2, 1)
    assert by_department["保育課"]["under_reporting"] is True
    assert by_department["戸籍住民課"]["under_reporting"] is True  # 1 near-miss for 2 incidents
    assert by_department["高齢福祉課"]["under_reporting"] is False
    assert {r["code"]: r["count"] for r in data["rules"]} == {"no_rule": 2, "followed_but_missed": 1}
    assert {r["code"]: r["count"] for r in data["tasks"]} == {"fax": 2, "postal": 1, "email": 1, "counter": 1, "phone": 1}
    assert [(r["code"], r["count"]) for r in data["items"]] == [("3-3", 2), ("4-1", 1)]
    assert [(r["text"], bool(r["overdue"])) for r in data["backlog"]] == [("期限切れの対策", True), ("まだ先の対策", False)]


def test_period_and_department_filters(app, make_user, reports):
    reviewer = make_user("checker", "reviewer", department="soumu-gyousei-joho")
    with app.app_context():
        hoiku = department(get_db(), "kodomo-hoiku")
    data = collect(app, reviewer, origin="internal", start="2026-02-01", end="2026-02-28")
    assert [m["month"] for m in data["months"]] == ["2026-02"]
    only = collect(app, reviewer, origin="internal", department_id=str(hoiku))
    assert [r["department"] for r in only["departments"]] == ["保育課"]


def test_both_origins_add_the_external_cases(app, make_user, reports):
    reviewer = make_user("checker", "reviewer", department="soumu-gyousei-joho")
    both = collect(app, reviewer, origin="both")
    assert sum(r["count"] for r in both["types"]) == 180 + 3


def test_managers_see_their_own_department_only(app, make_user, reports):
    manager = make_user("boss", "manager")  # 戸籍住民課
    data = collect(app, manager, origin="both", department_id="")
    assert [r["department"] for r in data["departments"]] == ["戸籍住民課"]
    assert sum(r["count"] for r in data["types"]) == 2  # internal only, own department


def test_staff_have_no_dashboard(app, make_user, client):
    staff = make_user("taro", "staff")
    with pytest.raises(Forbidden):
        dashboard.parse_filters(staff)
    login(client, "taro")
    assert client.get("/dashboard").status_code == 403


def test_end_before_start_is_a_message_not_a_500(client, signed_in):
    signed_in("reviewer", department="soumu-gyousei-joho")
    response = client.get("/dashboard?start=2026-03-01&end=2026-01-01")
    assert response.status_code == 422
    assert "終わりの日が始まりの日より前になっています。" in response.get_data(as_text=True)
    with pytest.raises(Invalid):
        dashboard.parse_filters(type("R", (), {"has_role": lambda self, *r: True, "department_id": 1})(),
                                start="2026-02-30")


def test_dashboard_page_draws_svg_charts_and_csv_opens_in_excel(client, signed_in, reports):
    signed_in("reviewer", department="soumu-gyousei-joho")
    html = client.get("/dashboard?origin=internal").get_data(as_text=True)
    assert html.count("<svg") >= 3 and "報告不足の疑い" in html and "期限切れの対策" in html
    response = client.get("/dashboard/departments.csv?origin=internal")
    assert response.headers["Content-Disposition"].endswith('dashboard-departments.csv"')
    body = response.data
    assert body.startswith(b"\xef\xbb\xbf") and b"\r\n" in body
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"), newline="")))
    assert rows[0] == ["所属", "事故", "ヒヤリ・ハット", "事故1件あたりのヒヤリ・ハット", "報告不足の疑い"]
    assert ["保育課", "1", "0", "0.0", "はい"] in rows
    assert client.get("/dashboard/nothing.csv").status_code == 404


def test_the_dashboard_opens_without_any_filter(client, signed_in):
    signed_in("reviewer", department="soumu-gyousei-joho")
    response = client.get("/dashboard")
    assert response.status_code == 200 and response.get_data(as_text=True).count("<svg") >= 3


def test_admins_count_and_list_only_the_published_reports_they_may_read(app, make_user, reports):
    admin = make_user("root", "admin", department="kikaku-johoseisaku")
    data = collect(app, admin, origin="internal")
    by_department = {row["department"]: row for row in data["departments"]}
    # 戸籍住民課 has one published incident; its submitted and approved reports are not the admin's to read.
    assert (by_department["戸籍住民課"]["incidents"], by_department["戸籍住民課"]["near_misses"]) == (1, 0)
    assert [row["text"] for row in data["backlog"]] == ["まだ先の対策"]
    assert "incident 2026-01-10" not in [row["title"] for row in data["backlog"]]
