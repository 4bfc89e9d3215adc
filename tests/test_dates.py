"""Date fields the Japanese way in every browser language: ``kb.dates`` entry by entry, and
the forms that read days and moments through it, through the Flask client."""

import csv
import io
import re
from pathlib import Path

import pytest

from kb import dates, staff, users
from kb.db import get_db
from tests.conftest import csrf_token, post_form
from tests.reporting import incident_form, post_report

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


# --- kb.dates -------------------------------------------------------------------------------

@pytest.mark.parametrize("typed, day", [
    ("2026-12-01", "2026-12-01"),
    ("2026/12/01", "2026-12-01"),
    ("2026/1/5", "2026-01-05"),
    ("2026.12.1", "2026-12-01"),
    ("2026年12月1日", "2026-12-01"),
    ("2026年12月1", "2026-12-01"),
    ("2026 年 12 月 1 日", "2026-12-01"),
    ("20261201", "2026-12-01"),
    ("２０２６／１２／０１", "2026-12-01"),
    ("２０２６年１２月１日", "2026-12-01"),
    ("2026－12－01", "2026-12-01"),
    ("2026ー12ー01", "2026-12-01"),
    ("  2026/12/01\u3000", "2026-12-01"),
    ("令和8年12月1日", "2026-12-01"),
    ("令和８年１２月１日", "2026-12-01"),
    ("令和08.12.01", "2026-12-01"),
    ("R8.12.1", "2026-12-01"),
    ("r8/12/1", "2026-12-01"),
    ("Ｒ８．１２．１", "2026-12-01"),
    ("令和元年5月1日", "2019-05-01"),
    ("平成17年4月1日", "2005-04-01"),
    ("H17.4.1", "2005-04-01"),
    ("平成元年1月8日", "1989-01-08"),
    ("平成31年4月30日", "2019-04-30"),
    ("㍻17年4月1日", "2005-04-01"),
    ("2028/2/29", "2028-02-29"),
])
def test_parse_day_reads_each_way_a_day_is_typed(typed, day):
    assert dates.parse_day(typed) == day


@pytest.mark.parametrize("typed, says", [
    ("2026/02/30", "2026年2月30日は存在しない日付です。"),
    ("2026/13/01", "2026年13月1日は存在しない日付です。"),
    ("2027/2/29", "2027年2月29日は存在しない日付です。"),
    ("12/01/2026", "2026/12/01 のように"),
    ("01/12/2026", "2026/12/01 のように"),
    ("2026/12", "2026/12/01 のように"),
    ("12月1日", "2026/12/01 のように"),
    ("2026-12-01T09:00", "2026/12/01 のように"),
    ("0226/12/01", "2026/12/01 のように"),
    ("きのう", "2026/12/01 のように"),
    ("2026/12/01/", "2026/12/01 のように"),
    ("令和1年4月1日", "令和の期間にありません"),
    ("平成31年5月1日", "平成の期間にありません"),
    ("平成元年1月7日", "平成の期間にありません"),
    ("昭和60年4月1日", "2026/12/01 のように"),
])
def test_parse_day_refuses_anything_else_with_a_japanese_message(typed, says):
    with pytest.raises(dates.DateError) as refused:
        dates.parse_day(typed)
    assert says in str(refused.value)
    assert isinstance(refused.value, ValueError)


@pytest.mark.parametrize("blank", ["", "   ", "\u3000", None])
def test_a_blank_day_or_moment_is_none(blank):
    assert dates.parse_day(blank) is None
    assert dates.parse_moment(blank) is None


@pytest.mark.parametrize("typed, moment", [
    ("2026/12/01 9:00", "2026-12-01T09:00"),
    ("2026/12/01 09:00", "2026-12-01T09:00"),
    ("2026-12-01T09:00", "2026-12-01T09:00"),
    ("2026-12-01 09:00:59", "2026-12-01T09:00"),
    ("2026年12月1日 9時", "2026-12-01T09:00"),
    ("2026年12月1日9時30分", "2026-12-01T09:30"),
    ("2026年12月1日 9時半", "2026-12-01T09:30"),
    ("2026/12/1 午後5時", "2026-12-01T17:00"),
    ("2026/12/1 午前0時", "2026-12-01T00:00"),
    ("令和8年12月1日 17:00", "2026-12-01T17:00"),
    ("R8.12.1 23:59", "2026-12-01T23:59"),
    ("２０２６／１２／０１\u3000９：００", "2026-12-01T09:00"),
])
def test_parse_moment_reads_a_day_and_a_time(typed, moment):
    assert dates.parse_moment(typed) == moment


@pytest.mark.parametrize("typed, says", [
    ("2026/12/01", "時刻も入力してください"),
    ("2026/12/01 24:00", "24時0分という時刻はありません"),
    ("2026/12/01 9:60", "9時60分という時刻はありません"),
    ("2026/02/30 9:00", "2026年2月30日は存在しない日付です"),
    ("2026/12/0109:00", "2026/12/01 09:00 のように"),
    ("12/01/2026 9:00", "2026/12/01 09:00 のように"),
    ("9:00", "2026/12/01 09:00 のように"),
    ("2026/12/01 午後13時", "2026/12/01 09:00 のように"),
])
def test_parse_moment_refuses_anything_else_with_a_japanese_message(typed, says):
    with pytest.raises(dates.DateError) as refused:
        dates.parse_moment(typed)
    assert says in str(refused.value)


@pytest.mark.parametrize("value, shown", [
    ("2026-12-01", "2026/12/01"),
    ("2005-04-01", "2005/04/01"),
    (None, ""),
    ("", ""),
    ("2026-02-30", "2026-02-30"),  # typed and refused: shown as typed
    ("令和8年12月", "令和8年12月"),
])
def test_shown_day_shows_a_stored_day_with_slashes_and_anything_else_as_it_is(value, shown):
    assert dates.shown_day(value) == shown


@pytest.mark.parametrize("value, shown", [
    ("2026-12-01T09:00", "2026/12/01 09:00"),
    ("2026-12-01T17:30", "2026/12/01 17:30"),
    (None, ""),
    ("2026/12/01 9時", "2026/12/01 9時"),
])
def test_shown_moment_shows_a_stored_moment_with_slashes_and_a_blank(value, shown):
    assert dates.shown_moment(value) == shown


# --- the fields ----------------------------------------------------------------------------

def test_no_template_uses_the_browsers_date_picker():
    # type=date follows the browser's language: mm/dd/yyyy in an English-language Edge.
    found = [str(path.relative_to(TEMPLATES)) for path in TEMPLATES.rglob("*.html")
             if re.search(r'type="(date|datetime-local)"', path.read_text(encoding="utf-8"))]
    assert found == []


def field(html: str, name: str) -> str:
    match = re.search(rf'<input[^>]*\bname="{name}"[^>]*>', html)
    assert match, f"no input named {name}"
    return match.group(0)


def test_report_date_fields_are_text_with_a_visible_example_and_described_by_it(client, signed_in):
    signed_in("staff")
    html = client.get("/reports/new/incident").get_data(as_text=True)
    for name in ("occurred_on", "discovered_on"):
        tag = field(html, name)
        assert 'type="text"' in tag and 'inputmode="numeric"' in tag and 'autocomplete="off"' in tag
        assert 'placeholder="2026/12/01"' in tag and f'aria-describedby="{name}-hint"' in tag
        assert f'<p class="hint" id="{name}-hint">例：2026/12/01</p>' in html
        assert f'<label for="{name}">' in html


def count_cases(app):
    with app.app_context():
        return get_db()["cases"].count


@pytest.mark.parametrize("occurred", ["令和8年11月3日", "２０２６／１１／０３"])
def test_a_report_saved_with_japanese_dates_stores_iso_and_shows_them_with_slashes(
        client, signed_in, app, occurred):
    signed_in("staff")
    response = post_report(client, "/reports/new/incident", incident_form(
        occurred_on=occurred, discovered_on="R8.11.5", **{"countermeasures-0-due_on": "2027年3月31日"}))
    assert response.status_code == 302, response.get_data(as_text=True)
    case_id = int(re.search(r"/reports/(\d+)/edit", response.headers["Location"]).group(1))
    with app.app_context():
        row = get_db().execute("SELECT occurred_on, discovered_on FROM cases WHERE case_id = ?",
                               [case_id]).fetchone()
        due = get_db().execute("SELECT due_on FROM countermeasures WHERE case_id = ?", [case_id]).fetchone()
    assert tuple(row) == ("2026-11-03", "2026-11-05") and due[0] == "2027-03-31"
    html = client.get(f"/reports/{case_id}/edit").get_data(as_text=True)
    assert 'value="2026/11/03"' in field(html, "occurred_on")
    assert 'value="2026/11/05"' in field(html, "discovered_on")
    assert 'value="2027/03/31"' in field(html, "countermeasures-0-due_on")


def test_an_impossible_day_is_refused_beside_the_field_and_what_was_typed_is_kept(client, signed_in, app):
    signed_in("staff")
    before = count_cases(app)
    response = post_report(client, "/reports/new/incident", incident_form(occurred_on="2026/02/30"))
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    errors = re.search(r'id="occurred_on-errors">(.*?)</ul>', html, re.S).group(1)
    assert "2026年2月30日は存在しない日付です。日付は 2026/12/01 のように入力してください" in errors
    tag = field(html, "occurred_on")
    assert 'value="2026/02/30"' in tag and 'aria-invalid="true"' in tag
    assert 'aria-describedby="occurred_on-hint occurred_on-errors"' in tag
    assert "通知書の封入誤りにより別人の通知を送付" in html  # the rest of the form too
    assert count_cases(app) == before


def test_the_dashboard_period_is_read_from_japanese_dates_in_the_query(client, signed_in):
    signed_in("reviewer", department="soumu-gyousei-joho")
    html = client.get("/dashboard?start=平成26年1月1日&end=２０１４／１２／３１").get_data(as_text=True)
    assert 'value="2014/01/01"' in field(html, "start") and 'value="2014/12/31"' in field(html, "end")
    japanese = client.get("/dashboard/months.csv?start=平成26年1月1日&end=H26.12.31")
    iso = client.get("/dashboard/months.csv?start=2014-01-01&end=2014-12-31")
    everything = client.get("/dashboard/months.csv")
    assert japanese.status_code == 200 and japanese.data == iso.data

    def months(response):
        return [row[0] for row in csv.reader(io.StringIO(response.data.decode("utf-8-sig")))][1:]
    # The seeded cases of other municipalities go back to 2005; 2014 has a few.
    assert months(japanese) and all(month.startswith("2014-") for month in months(japanese))
    assert len(months(everything)) > len(months(japanese))


def test_a_bad_dashboard_day_is_a_message_beside_its_field(client, signed_in):
    signed_in("reviewer", department="soumu-gyousei-joho")
    response = client.get("/dashboard?start=2026/02/30&end=2026/03/31")
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert re.search(r'id="start-errors"><li>2026年2月30日は存在しない日付です。', html)
    assert 'value="2026/02/30"' in field(html, "start") and 'aria-invalid="true"' in field(html, "start")


def test_a_campaign_opens_and_closes_at_moments_typed_the_japanese_way(client, signed_in, app):
    signed_in("reviewer", department="soumu-gyousei-joho")
    response = post_form(client, "/campaigns/new", {
        "title": "令和8年度 自己点検", "opens_at": "令和8年12月1日 9時", "closes_at": "2026/12/15 17:00",
        "target": "whole", "questions_per_person": "4", "pass_mark": "3", "retakes": "none"})
    assert response.status_code == 302, response.get_data(as_text=True)
    campaign_id = int(response.headers["Location"].rsplit("/", 1)[1])
    with app.app_context():
        row = get_db().execute("SELECT opens_at, closes_at FROM campaigns WHERE campaign_id = ?",
                               [campaign_id]).fetchone()
    assert tuple(row) == ("2026-12-01T09:00", "2026-12-15T17:00")
    html = client.get(f"/campaigns/{campaign_id}/edit").get_data(as_text=True)
    opens = field(html, "opens_at")
    assert 'value="2026/12/01 09:00"' in opens and 'type="text"' in opens
    assert 'placeholder="2026/12/01 09:00"' in opens and "例：2026/12/01 09:00" in html
    assert 'value="2026/12/15 17:00"' in field(html, "closes_at")


def test_a_campaign_moment_without_a_time_is_refused_and_kept(client, signed_in, app):
    signed_in("reviewer", department="soumu-gyousei-joho")
    with app.app_context():
        before = get_db()["campaigns"].count
    response = post_form(client, "/campaigns/new", {
        "title": "令和8年度 自己点検", "opens_at": "2026/12/01 9:00", "closes_at": "2026/12/15",
        "target": "whole", "questions_per_person": "4", "pass_mark": "3", "retakes": "none"})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert re.search(r'id="closes_at-errors"><li>時刻も入力してください（例：2026/12/01 09:00）。', html)
    assert 'value="2026/12/15"' in field(html, "closes_at")
    assert 'value="2026/12/01 9:00"' in field(html, "opens_at")
    with app.app_context():
        assert get_db()["campaigns"].count == before


def test_a_staff_status_period_is_typed_the_japanese_way(client, signed_in, make_user, app):
    signed_in("admin")
    target = make_user("hanako", "staff")
    url = f"/admin/staff/{target.user_id}"
    html = client.get(url).get_data(as_text=True)
    assert 'type="text"' in field(html, "starts_on") and "例：2026/12/01" in html
    version = re.search(r'name="version" value="(\d+)"', html).group(1)
    refused = client.post(f"{url}/status", data={
        "csrf_token": csrf_token(html), "version": version, "status": "sick_leave",
        "starts_on": "2026ー04ー31", "ends_on": "", "reason": "人事課から連絡"})
    page = refused.get_data(as_text=True)
    assert refused.status_code == 422
    assert re.search(r'id="starts_on-errors"><li>2026年4月31日は存在しない日付です。', page)
    assert 'value="2026ー04ー31"' in field(page, "starts_on")
    done = client.post(f"{url}/status", data={
        "csrf_token": csrf_token(html), "version": version, "status": "sick_leave",
        "starts_on": "令和8年4月1日", "ends_on": "２０２６／４／３０", "reason": "人事課から連絡"})
    assert done.status_code == 302
    with app.app_context():
        history = staff.status_history(get_db(), users.SYSTEM, target.user_id)
    assert [(p["starts_on"], p["ends_on"]) for p in history if p["source"] == "manual"] == [
        ("2026-04-01", "2026-04-30")]


def test_the_audit_log_filter_reads_japanese_days_and_says_when_one_is_wrong(client, signed_in):
    signed_in("admin")
    html = client.get("/admin/audit?start=令和8年1月1日&end=2099/12/31").get_data(as_text=True)
    assert 'value="令和8年1月1日"' in field(html, "start") and 'class="data-table"' in html

    def rows(query):
        response = client.get(f"/admin/audit.csv?{query}")
        assert response.status_code == 200
        return len(response.data.decode("utf-8-sig").splitlines()) - 1
    assert rows("start=令和8年1月1日") == rows("start=2026-01-01") > 0
    assert rows("start=２０９９／１／１") == 0 and rows("end=平成元年1月8日") == 0
    refused = client.get("/admin/audit?start=2026/13/01")
    page = refused.get_data(as_text=True)
    assert refused.status_code == 422
    assert re.search(r'id="audit-start-errors"><li>2026年13月1日は存在しない日付です。', page)
    assert 'value="2026/13/01"' in field(page, "start") and 'class="data-table"' not in page


def test_a_workshop_date_is_typed_the_japanese_way(client, signed_in, app):
    signed_in("trainer")
    response = post_form(client, "/workshops", {"title": "FAX誤送信を防ぐ", "held_on": "令和8年12月10日",
                                                "audience_department_id": ""})
    assert response.status_code == 302, response.get_data(as_text=True)
    with app.app_context():
        assert get_db().execute("SELECT held_on FROM workshops ORDER BY workshop_id DESC"
                                ).fetchone()[0] == "2026-12-10"
    html = client.get(response.headers["Location"]).get_data(as_text=True)
    assert 'value="2026/12/10"' in field(html, "held_on")


def test_the_office_clock_is_japan_time_whatever_zone_the_server_runs_in(monkeypatch):
    """A server on UTC (or anywhere) must not open campaigns nine hours late or call this
    morning's date the future: campaign times and "today" are JST."""
    import time as clock
    from datetime import datetime, timezone

    from kb import campaigns, dates

    monkeypatch.setenv("TZ", "America/Los_Angeles")
    clock.tzset()
    try:
        moment = datetime(2026, 12, 1, 0, 30, tzinfo=timezone.utc)
        assert campaigns.local_moment(moment) == "2026-12-01T09:30"
        assert campaigns._as_moment("2026-12-01T09:30") == moment
        assert dates.in_office_time(datetime(2026, 12, 1, 9, 30)).utcoffset().total_seconds() == 9 * 3600
        assert dates.office_now().utcoffset().total_seconds() == 9 * 3600
        assert abs(dates.office_now() - datetime.now(timezone.utc)).total_seconds() < 5
    finally:
        monkeypatch.delenv("TZ")
        clock.tzset()


@pytest.mark.parametrize("stamp, day", [
    ("2026-11-30T16:30:00+00:00", "2026-12-01"),  # 01:30 in the office: already the next day
    ("2026-11-30T14:59:59+00:00", "2026-11-30"),
    ("2026-03-10", "2026-03-10"),  # a bare day is taken as the office's
    ("x", "x"), (None, ""), ("", ""),
])
def test_office_day_is_the_day_of_a_utc_timestamp_on_the_offices_clock(stamp, day):
    assert dates.office_day(stamp) == day
