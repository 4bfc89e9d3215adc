"""The query log (issue #14 item 4): what search failed to find, counted per week, with no
trace of who searched, through the real search page, the real database and the real index."""

import logging
import re
import sqlite3
from datetime import datetime, timedelta, timezone
from html import unescape
from urllib.parse import quote

import pytest

from kb import querylog, scheduler
from kb.db import database_path, get_db
from tests.conftest import csrf_token, login

# A Monday, 09:00 in Japan.
NOW = datetime(2026, 11, 30, 0, 0, tzinfo=timezone.utc)


def log_rows(app) -> list[dict]:
    with app.app_context():
        return [dict(row) for row in get_db().query(
            "SELECT * FROM query_log ORDER BY week, query_key")]


def record(app, text, *, found=0, times=1, now=None):
    with app.app_context():
        for _ in range(times):
            assert querylog.record_search(get_db(), text, found=found, now=now)


def sign_out(client) -> None:
    token = csrf_token(client.get("/").get_data(as_text=True))
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302


def reviewer_page(client, **args) -> str:
    response = client.get("/admin/search-log", query_string=args)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def listed(html: str) -> list[str]:
    """The queries of the reviewer page's table, in order."""
    return [unescape(text) for text in re.findall(
        r"<tr>\s*<td>[^<]*</td>\s*<td>([^<]*)</td>", html)]


def test_spelling_variants_of_a_query_count_together_under_the_first_spelling(app, client,
                                                                              signed_in):
    signed_in("staff")
    for query in ("ＵＳＢ　紛失", "usb 紛失", "USB   紛失"):
        assert client.get("/cases", query_string={"q": query}).status_code == 200
    rows = log_rows(app)
    assert len(rows) == 1
    assert rows[0]["query_key"] == "usb 紛失"
    assert rows[0]["display"] == "ＵＳＢ 紛失"
    assert rows[0]["searches"] == 3
    assert querylog.normalize_query("ファクス 誤送信") == querylog.normalize_query("ＦＡＸ　誤送信")


def test_a_search_that_finds_nothing_is_listed_under_no_results(app, client, signed_in):
    signed_in("staff")
    client.get("/cases?q=ゾウガメ 天体望遠鏡")
    client.get("/cases?q=ゾウガメ 天体望遠鏡")
    client.get("/cases?q=FAX 誤送信")
    by_text = {row["display"]: row for row in log_rows(app)}
    assert (by_text["ゾウガメ 天体望遠鏡"]["searches"], by_text["ゾウガメ 天体望遠鏡"]["no_results"]) == (2, 2)
    assert (by_text["FAX 誤送信"]["searches"], by_text["FAX 誤送信"]["no_results"]) == (1, 0)
    sign_out(client)
    signed_in("reviewer")
    assert listed(reviewer_page(client)) == ["ゾウガメ 天体望遠鏡"]


def test_opening_a_case_from_the_results_takes_the_query_off_the_unopened_list(
        app, client, signed_in, make_user):
    make_user("reviewer-user", "reviewer", department="soumu-gyousei-joho")
    signed_in("staff")
    html = client.get("/cases?q=FAX 誤送信").get_data(as_text=True)
    client.get("/cases?q=宛名 シール")
    sign_out(client)
    login(client, "reviewer-user")
    assert listed(reviewer_page(client, list="unopened")) == ["FAX 誤送信", "宛名 シール"]
    # The result links carry the query; following one counts an open for this week's row.
    link = unescape(re.search(r'<h2 class="card-title"><a href="([^"]+)"', html).group(1))
    assert "q=" in link
    assert client.get(link).status_code == 200
    assert {row["display"]: row["opens"] for row in log_rows(app)} == {"FAX 誤送信": 1,
                                                                       "宛名 シール": 0}
    assert listed(reviewer_page(client, list="unopened")) == ["宛名 シール"]
    # A case page with a query nobody searched creates no row.
    client.get(link.split("?")[0] + "?q=" + quote("だれも検索していない"))
    assert len(log_rows(app)) == 2


def test_paging_filters_and_empty_queries_are_not_new_searches(app, client, signed_in):
    signed_in("staff")
    client.get("/cases?q=FAX")
    for url in ("/cases?q=FAX&page=2", "/cases?q=FAX&origin=external", "/cases?origin=external",
                "/cases?q=FAX&nolog=1", "/cases?q=%20%20"):
        assert client.get(url).status_code in (200, 302)
    assert [(row["display"], row["searches"]) for row in log_rows(app)] == [("FAX", 1)]


@pytest.mark.parametrize("query", [
    "鰐淵様 誤交付", "090-8765-4321 FAX", "（０３）９８７６－５４３２ 電話", "wanibuchi@example.jp メール",
    "鰐淵 花子さん 窓口"])
def test_a_query_with_personal_data_is_never_stored(app, client, signed_in, query):
    signed_in("staff")
    response = client.get("/cases", query_string={"q": query})
    assert response.status_code == 200
    case_id = re.search(r'href="/cases/(\d+)', response.get_data(as_text=True))
    if case_id:  # opening a result does not store it either
        client.get(f"/cases/{case_id.group(1)}", query_string={"q": query})
    assert log_rows(app) == []
    # Not in any form: neither the database file nor its write-ahead log holds it.
    path = database_path(app.config["DATA_DIR"])
    stored = b"".join(p.read_bytes() for p in (path, path.with_name(path.name + "-wal"))
                      if p.exists())
    for word in ("鰐淵", "wanibuchi", "8765", "９８７６"):
        assert word.encode() not in stored


def test_the_log_records_no_user_and_no_time_finer_than_the_week(app, client, signed_in):
    user = signed_in("staff", login_id="logged-searcher")
    client.get("/cases?q=誤送付 封筒")
    with app.app_context():
        db = get_db()
        columns = [row[1] for row in db.execute("PRAGMA table_info(query_log)")]
        with pytest.raises(sqlite3.OperationalError):  # no rowid: no order of insertion
            db.execute("SELECT rowid FROM query_log")
    assert columns == ["week", "query_key", "display", "searches", "no_results", "opens"]
    [row] = log_rows(app)
    assert row == {"week": querylog.week_of(), "query_key": "誤送付 封筒", "display": "誤送付 封筒",
                   "searches": 1, "no_results": row["no_results"], "opens": 0}
    assert str(user.user_id) not in row["week"] + row["query_key"]


def test_a_search_belongs_to_the_week_of_the_office_clock():
    sunday_evening_utc = datetime(2026, 11, 29, 15, 30, tzinfo=timezone.utc)  # Monday 00:30 JST
    assert querylog.week_of(sunday_evening_utc) == "2026-W49"
    assert querylog.week_of(sunday_evening_utc - timedelta(hours=1)) == "2026-W48"
    assert querylog.week_label("2026-W49") == "2026年11月30日の週"


def test_rows_older_than_52_weeks_are_dropped_by_the_scheduler_job(app, client, signed_in):
    record(app, "一年前の検索", now=NOW - timedelta(weeks=52))
    record(app, "五十一週前の検索", now=NOW - timedelta(weeks=51))
    record(app, "今週の検索", now=NOW)
    reviewer = signed_in("reviewer")
    with app.app_context():
        # Not listed once past the retention, even before the job has run.
        shown = querylog.search_log(get_db(), reviewer, now=NOW)["rows"]
        assert sorted(row["display"] for row in shown) == ["五十一週前の検索", "今週の検索"]
        result = scheduler.run_due_work(get_db(), NOW, settings=app.config)
    assert result["jobs"]["drop_old_query_log"] == {"dropped": 1}
    assert sorted(row["display"] for row in log_rows(app)) == ["五十一週前の検索", "今週の検索"]
    with app.app_context():  # idempotent
        assert scheduler.run_due_work(get_db(), NOW, settings=app.config)[
            "jobs"]["drop_old_query_log"] == {"dropped": 0}


def test_a_locked_database_does_not_break_the_search_page(app, client, signed_in, caplog):
    signed_in("staff")
    html = client.get("/cases?q=FAX 誤送信").get_data(as_text=True)
    link = unescape(re.search(r'<h2 class="card-title"><a href="([^"]+)"', html).group(1))
    holder = sqlite3.connect(database_path(app.config["DATA_DIR"]), isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
        with caplog.at_level(logging.WARNING, logger="kb.querylog"):
            response = client.get("/cases?q=封入 誤り")
            opened = client.get(link)
        assert response.status_code == 200
        assert "件の事例" in response.get_data(as_text=True)
        assert opened.status_code == 200
        assert "query log not written" in caplog.text
        assert "database is locked" in caplog.text
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    # Nothing half-written; the next search is counted again.
    assert [(row["display"], row["opens"]) for row in log_rows(app)] == [("FAX 誤送信", 0)]
    client.get("/cases?q=封入 誤り")
    assert len(log_rows(app)) == 2


def test_reviewer_page_lists_newest_week_first_and_most_frequent_first_within_it(
        app, client, signed_in):
    now = datetime.now(timezone.utc)  # the page reads the clock
    last_week = now - timedelta(weeks=1)
    record(app, "先週 一回", now=last_week)
    record(app, "先週 三回", times=3, now=last_week)
    record(app, "今週 一回", now=now)
    record(app, "今週 二回", times=2, now=now)
    record(app, "見つかった", found=5, times=9, now=now)
    reviewer = signed_in("reviewer")
    with app.app_context():  # the core, at an explicit now
        by_week = querylog.search_log(get_db(), reviewer, now=now)["rows"]
        by_count = querylog.search_log(get_db(), reviewer, sort="count", now=now)["rows"]
    assert [row["display"] for row in by_week] == ["今週 二回", "今週 一回", "先週 三回", "先週 一回"]
    assert [row["display"] for row in by_count] == ["先週 三回", "今週 二回", "今週 一回", "先週 一回"]
    html = reviewer_page(client)
    assert listed(html) == ["今週 二回", "今週 一回", "先週 三回", "先週 一回"]
    assert listed(reviewer_page(client, sort="count")) == ["先週 三回", "今週 二回", "今週 一回", "先週 一回"]
    assert querylog.week_label(querylog.week_of(now)) in html
    # One click to the vocabulary form with the words, and one to run the search.
    assert f'href="/admin/vocabulary/new?words={quote("今週 二回", safe="")}"' in html
    assert 'href="/cases?q=%E4%BB%8A%E9%80%B1+%E4%BA%8C%E5%9B%9E&amp;nolog=1"' in html
    assert "言い換えを追加" in html and "検索する" in html
    assert 'href="/admin/search-log"' in html  # the reviewer's navigation


def test_reviewer_page_pages_with_the_pager(app, client, signed_in):
    for number in range(querylog.PAGE_SIZE + 3):
        record(app, f"見つからない語{number:03d}")
    signed_in("reviewer")
    first = reviewer_page(client)
    assert len(listed(first)) == querylog.PAGE_SIZE
    assert 'rel="next"' in first
    second = reviewer_page(client, page=2)
    assert len(listed(second)) == 3
    assert reviewer_page(client, page="x", list="nonsense", sort="nonsense")  # never an error


def test_reviewer_page_downloads_the_list_as_csv_for_excel(app, client, signed_in):
    record(app, "=HYPERLINK 紛失", times=2)
    signed_in("reviewer")
    response = client.get("/admin/search-log.csv?list=no_results")
    assert response.status_code == 200
    body = response.get_data()
    assert body.startswith("\ufeff".encode())
    text = body.decode("utf-8-sig")
    assert text.splitlines()[0] == "週,週の初日,検索語,件数,検索回数,結果0件,事例を開いた回数"
    assert "'=HYPERLINK 紛失,2,2,2,0" in text


@pytest.mark.parametrize("roles", [("staff",), ("manager",), ("trainer",), ("admin",)])
def test_only_reviewers_see_the_search_log(client, signed_in, roles):
    signed_in(*roles)
    assert client.get("/admin/search-log").status_code == 403
    assert client.get("/admin/search-log.csv").status_code == 403
    assert 'href="/admin/search-log"' not in client.get("/").get_data(as_text=True)


def test_the_core_refuses_anyone_but_a_reviewer(app, make_user):
    manager = make_user("a-manager", "manager")
    with app.app_context():
        from kb.exceptions import Forbidden
        with pytest.raises(Forbidden):
            querylog.search_log(get_db(), manager)
        with pytest.raises(Forbidden):
            querylog.search_log(get_db(), None)


@pytest.mark.parametrize("query", ["！？＃＄％", "AND OR NOT", "の を に", "()[]{}:^~*?", "-"])
def test_a_query_of_only_symbols_or_stop_words_is_not_logged_and_never_an_error(
        app, client, signed_in, query):
    signed_in("staff")
    assert client.get("/cases", query_string={"q": query}).status_code == 200
    assert log_rows(app) == []
    sign_out(client)
    signed_in("reviewer")
    html = reviewer_page(client)
    assert "結果が0件だった検索はありません" in html
    assert "事例が開かれなかった検索はありません" in reviewer_page(client, list="unopened")
