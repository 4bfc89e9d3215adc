"""自己点検 participation pages: figures per 部 and 課, charts, CSV, weak points, the
correlation with reports, who may see them, and the demo campaigns (issue #13)."""

import csv
import io
import re
from datetime import timedelta

import pytest

from kb import campaigns, dates, participation_charts, users
from kb.db import get_db
from kb.exceptions import Forbidden
from tests.conftest import login
from tests.test_campaigns import department_id, finish, load_roster, make_campaign, open_

TODAY = dates.office_today()


@pytest.fixture
def reviewer(make_user):
    return make_user("rev", "reviewer", department="soumu-gyousei-joho")


def people(db):
    """Roster people: 戸籍住民課 4, 課税課 2, 人事課 2 (all with e-mail)."""
    rows = [(f"9{n:05d}", dept, "", f"p{n}@example.jp") for n, dept in enumerate(
        ["kumin-koseki"] * 4 + ["kumin-kazei"] * 2 + ["soumu-jinji"] * 2)]
    return load_roster(db, rows)


def by_code(rows):
    return {row["code"]: row for row in rows}


def test_open_campaign_figures_are_live_and_closed_ones_frozen(app, reviewer, make_user):
    with app.app_context():
        db = get_db()
        ids = people(db)
        campaign_id = make_campaign(db, reviewer, departments=("kumin",))
        open_(db, reviewer, campaign_id)
        first = users.get_user(db, ids["900000"])
        finish(db, first, campaign_id)
        live = participation_charts.figures(db, reviewer, campaign_id)
        assert not live["closed"]
        kumin = by_code(live["bureaus"])["kumin"]
        assert (kumin["eligible"], kumin["completed"]) == (6, 1)
        assert by_code(kumin["sections"])["kumin-koseki"]["rate"] == 0.25
        make_user("newcomer", department="kumin-koseki")  # live: the newcomer counts at once
        assert by_code(participation_charts.figures(db, reviewer, campaign_id)["bureaus"])[
            "kumin"]["eligible"] == 7
        campaigns.close_campaign(db, reviewer, campaign_id)
    make_user("latecomer", department="kumin-koseki")  # after closing: nothing moves
    with app.app_context():
        frozen = participation_charts.figures(get_db(), reviewer, campaign_id)
    assert frozen["closed"]
    kumin = by_code(frozen["bureaus"])["kumin"]
    assert (kumin["eligible"], kumin["completed"], kumin["rate"]) == (7, 1, round(1 / 7, 4))
    assert kumin["mean_percent"] == 100.0


def _two_departments_answered(app, reviewer, *, done_koseki, done_kazei, title_days=0):
    with app.app_context():
        db = get_db()
        ids = {row[0]: row[1] for row in db.execute(
            "SELECT employee_number, user_id FROM users WHERE employee_number LIKE '9%'")} or people(db)
        campaign_id = make_campaign(db, reviewer, departments=("kumin-koseki", "kumin-kazei"),
                                    opens=f"{TODAY - timedelta(days=2 + title_days)}T09:00")
        open_(db, reviewer, campaign_id)
        for number in [f"9{n:05d}" for n in range(done_koseki)] + \
                      [f"9{n:05d}" for n in range(4, 4 + done_kazei)]:
            finish(db, users.get_user(db, ids[number]), campaign_id)
        return campaign_id


def bar_titles(svg: str) -> list[str]:
    return re.findall(r'<rect class="bar"[^>]*><title>([^<]+)</title>', svg)


def test_chart_draws_bars_lowest_rate_first_with_the_100_percent_line(client, app, reviewer):
    # 戸籍住民課 1 of 4 (25 %), 課税課 2 of 2 (100 %).
    campaign_id = _two_departments_answered(app, reviewer, done_koseki=1, done_kazei=2)
    login(client, "rev")
    page = client.get(f"/participation/{campaign_id}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    section_chart = html.split('id="section-chart"', 1)[1].split("</svg>", 1)[0]
    titles = bar_titles(section_chart)
    assert [t.split(" ")[0] for t in titles] == ["戸籍住民課", "課税課"]
    assert "25.0%" in titles[0] and "100.0%" in titles[1]
    assert 'class="full-line"' in section_chart and ">100%</text>" in section_chart
    assert "style=" not in html.split("<main", 1)[-1]  # CSP: no inline styles


def test_previous_campaign_rates_stand_beside_the_current_ones(client, app, reviewer):
    earlier = _two_departments_answered(app, reviewer, done_koseki=2, done_kazei=0, title_days=30)
    with app.app_context():
        campaigns.close_campaign(get_db(), reviewer, earlier)
    current = _two_departments_answered(app, reviewer, done_koseki=3, done_kazei=1)
    with app.app_context():
        data = participation_charts.figures(get_db(), reviewer, current)
    assert data["previous"]["campaign_id"] == earlier
    koseki = by_code(data["sections"])["kumin-koseki"]
    assert (koseki["rate"], koseki["previous_rate"]) == (0.75, 0.5)
    assert by_code(data["sections"])["kumin-kazei"]["previous_rate"] == 0.0
    login(client, "rev")
    html = client.get(f"/participation/{current}").get_data(as_text=True)
    assert 'class="previous-bar"' in html and "前回 50.0%" in html


def test_csv_opens_in_excel_and_neutralises_formulas(client, app, reviewer):
    campaign_id = _two_departments_answered(app, reviewer, done_koseki=1, done_kazei=0)
    with app.app_context():
        get_db().execute("UPDATE departments SET name = '=HYPERLINK(\"x\")' WHERE code = 'kumin-kazei'")
        get_db().conn.commit()
    login(client, "rev")
    response = client.get(f"/participation/{campaign_id}.csv")
    assert response.status_code == 200
    assert response.data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(response.data.decode("utf-8-sig"))))
    assert rows[0][:7] == ["区分", "コード", "所属", "部", "対象", "回答", "回答率(%)"]
    kazei = next(r for r in rows if r[1] == "kumin-kazei")
    assert kazei[2].startswith("'=")
    koseki = next(r for r in rows if r[1] == "kumin-koseki")
    assert (koseki[0], koseki[3], koseki[4], koseki[5], koseki[6]) == ("課", "区民部", "4", "1", "25.0")


def test_weak_points_table_links_each_cell_to_the_item_and_its_cases(client, app, reviewer):
    with app.app_context():
        db = get_db()
        ids = people(db)
        campaign_id = make_campaign(db, reviewer, departments=("kumin", "soumu"))
        open_(db, reviewer, campaign_id)
        finish(db, users.get_user(db, ids["900000"]), campaign_id, right=False)
        finish(db, users.get_user(db, ids["900006"]), campaign_id, right=True)
        data = participation_charts.weak_points(db, reviewer, campaign_id)
    cells = {b["code"]: b["cells"] for b in data["bureaus"]}
    code = data["items"][0]["code"]
    assert cells["kumin"][code]["rate"] == 1.0 and cells["soumu"][code]["rate"] == 0.0
    assert data["overall"][code]["rate"] == 0.5
    login(client, "rev")
    html = client.get(f"/participation/{campaign_id}/weak-points").get_data(as_text=True)
    assert f'href="/checklist/items/{code}"' in html
    assert f'href="/cases?items={code}"' in html
    assert ">100%</a>" in html


def test_correlation_counts_reports_per_100_eligible_for_a_known_dataset(app, reviewer, make_user):
    reporter = make_user("reporter", "staff", department="soumu-soumu")
    with app.app_context():
        db = get_db()
        ids = people(db)
        campaign_id = make_campaign(db, reviewer, departments=("kumin", "soumu"))
        open_(db, reviewer, campaign_id)
        # 区民部: 6 eligible, 3 done. 総務部: 人事課 2, the reviewer and the reporter; 1 done.
        for number in ("900000", "900001", "900004", "900006"):
            finish(db, users.get_user(db, ids[number]), campaign_id)
        koseki, jinji = department_id(db, "kumin-koseki"), department_id(db, "soumu-jinji")
        recent, old = (TODAY - timedelta(days=30)).isoformat(), (TODAY - timedelta(days=400)).isoformat()
        for dept, kind, status, day in [(koseki, "incident", "submitted", recent),
                                        (koseki, "near_miss", "published", recent),
                                        (koseki, "near_miss", "approved", recent),
                                        (koseki, "near_miss", "draft", recent),      # not counted
                                        (koseki, "incident", "published", old),      # too old
                                        (jinji, "near_miss", "published", recent)]:
            db["cases"].insert({"kind": kind, "origin": "internal", "status": status,
                                "title": f"{kind} {day}", "department_id": dept,
                                "reporter_id": reporter.user_id, "occurred_on": day,
                                "created_at": recent, "updated_at": recent})
        data = participation_charts.correlation(db, reviewer, campaign_id, today=TODAY)
        eligible = by_code(participation_charts.figures(db, reviewer, campaign_id)["bureaus"])
    rows = by_code(data["bureaus"])
    kumin, soumu = rows["kumin"], rows["soumu"]
    assert (kumin["eligible"], kumin["incidents"], kumin["near_misses"]) == (6, 1, 2)
    assert kumin["incidents_per_100"] == round(100 / 6, 2)
    assert kumin["near_misses_per_100"] == round(200 / 6, 2)
    assert kumin["rate"] == 0.5
    assert soumu["eligible"] == eligible["soumu"]["eligible"]
    assert soumu["near_misses_per_100"] == round(100 / soumu["eligible"], 2)
    assert data["r"]["rate_incidents"] is None  # two 部局: no coefficient


def test_pearson_matches_a_hand_computed_value():
    assert participation_charts.pearson([1, 2, 3], [2, 4, 6]) == 1.0
    assert participation_charts.pearson([1, 2, 3], [3, 1, 2]) == -0.5
    assert participation_charts.pearson([1, 1, 1], [1, 2, 3]) is None
    assert participation_charts.pearson([1, 2], [1, 2]) is None


def test_correlation_page_says_correlation_and_reads_near_misses_as_reporting_culture(
        client, app, reviewer):
    campaign_id = _two_departments_answered(app, reviewer, done_koseki=1, done_kazei=1)
    login(client, "rev")
    html = client.get(f"/participation/{campaign_id}/correlation").get_data(as_text=True)
    assert "<strong>相関</strong>" in html and "報告する文化" in html
    assert 'class="chart scatter-chart"' in html and 'class="point-near-miss"' in html


def test_who_may_see_the_participation_pages(client, app, reviewer, make_user):
    campaign_id = _two_departments_answered(app, reviewer, done_koseki=1, done_kazei=2)
    make_user("boss", "manager", department="kumin-koseki")
    make_user("worker", "staff", department="kumin-koseki")
    pages = [f"/participation/{campaign_id}", f"/participation/{campaign_id}.csv",
             f"/participation/{campaign_id}/weak-points", f"/participation/{campaign_id}/correlation"]
    assert client.get(pages[0]).status_code == 302  # signed out: to the login page
    login(client, "worker")
    assert [client.get(p).status_code for p in pages] == [403, 403, 403, 403]
    client = app.test_client()
    login(client, "boss")
    assert [client.get(p).status_code for p in pages] == [200, 200, 403, 403]
    with app.app_context():
        db = get_db()
        boss = users.get_user(db, db.execute("SELECT user_id FROM users WHERE login = 'boss'").fetchone()[0])
        data = participation_charts.figures(db, boss, campaign_id)
        with pytest.raises(Forbidden):
            participation_charts.correlation(db, boss, campaign_id)
    # One person of 戸籍住民課 finished: their score is not shown as the 課's mean.
    assert by_code(data["sections"])["kumin-koseki"]["mean_score"] is None
    assert data["scores_hidden"]
    with app.app_context():
        assert by_code(participation_charts.figures(get_db(), reviewer, campaign_id)["sections"])[
            "kumin-koseki"]["mean_score"] is not None


def test_a_manager_never_reads_a_mean_over_fewer_than_three_people_even_for_the_whole(
        client, app, reviewer, make_user):
    campaign_id = _two_departments_answered(app, reviewer, done_koseki=1, done_kazei=1)
    make_user("boss", "manager", department="kumin-koseki")
    with app.app_context():
        db = get_db()
        boss = users.get_user(db, db.execute("SELECT user_id FROM users WHERE login = 'boss'").fetchone()[0])
        assert participation_charts.figures(db, boss, campaign_id)["total"]["mean_percent"] is None
        assert participation_charts.figures(db, reviewer, campaign_id)["total"]["mean_percent"] is not None
    login(client, "boss")
    assert "平均正答率" not in client.get(f"/participation/{campaign_id}").get_data(as_text=True).split("数値の表")[0]


def test_a_draft_has_no_participation_page(client, app, reviewer):
    with app.app_context():
        campaign_id = make_campaign(get_db(), reviewer)
    login(client, "rev")
    assert client.get(f"/participation/{campaign_id}").status_code == 404
    assert client.get("/participation").status_code == 200


def test_demo_init_makes_a_closed_and_an_open_campaign_once(app):
    runner = app.test_cli_runner()
    first = runner.invoke(args=["init", "--demo"])
    assert first.exit_code == 0, first.output
    assert "demo campaigns: one closed, one open" in first.output

    def state():
        with app.app_context():
            db = get_db()
            return [db.execute(sql).fetchall() for sql in (
                "SELECT campaign_id, status, version FROM campaigns ORDER BY campaign_id",
                "SELECT count(*), sum(on_paper), count(finished_at) FROM campaign_attempts",
                "SELECT count(*) FROM campaign_answers",
                "SELECT count(*) FROM campaign_exclusions",
                "SELECT count(*) FROM campaign_eligibility")]

    before = state()
    assert [row[1] for row in before[0]] == ["closed", "open"]
    attempts, on_paper, finished = before[1][0]
    assert finished > 100 and on_paper > 0 and before[3][0][0] >= 2
    second = runner.invoke(args=["init", "--demo"])
    assert second.exit_code == 0, second.output
    assert "demo campaigns: already created" in second.output
    assert state() == before
    with app.app_context():
        db = get_db()
        reviewer = users.get_user(db, db.execute(
            "SELECT user_id FROM users WHERE login = 'demo-reviewer'").fetchone()[0])
        closed, opened = (row[0] for row in before[0])
        rates = [b["rate"] for b in participation_charts.figures(db, reviewer, opened)["bureaus"]
                 if b["eligible"] > 5]
        assert participation_charts.figures(db, reviewer, opened)["previous"]["campaign_id"] == closed
        assert participation_charts.weak_points(db, reviewer, closed)["bureaus"]
    assert max(rates) - min(rates) > 0.2  # participation varies by department
