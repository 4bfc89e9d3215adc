"""The query log: what search failed to find, counted per week, for improving the vocabulary.

Privacy by design (DESIGN §11): the log is for the office's vocabulary, not for watching
people. A row is only (ISO week, normalised query, the first spelling seen, counters):
no user, no session, no address and no time finer than the week is stored, and the table
has no rowid, so not even the order in which queries were first typed is kept. A query in
which the personal-data check (``kb.pii.scan``, the check reports use) finds anything is
never stored, in any form; nor is a query longer than the search reads (pasted text).

What counts (``record_search``): a search with words, on its first page, without filters.
Paging, filter-only listings and refining a search with a filter are not new searches
(a refinement's empty list is the filter's doing, not the words'). ``record_open`` counts
a case opened from a result list (the result links carry the query); "no case opened"
is a week's searches of a query that found something while ``opens`` stayed 0.

Writing the log never slows or breaks a search: one statement in its own small
transaction, waiting at most ``WRITE_WAIT_MS`` for the write lock; any failure is logged
as a warning and the page renders. Rows older than ``KEEP_WEEKS`` are dropped by the
scheduler job ``drop_old_query_log`` (run by `serve` every minute and by `send-mail`).
"""

import logging
import re
import unicodedata
from datetime import date, datetime, timedelta, timezone

from kb import analysis, pii, ranking, scheduler
from kb.db import transaction
from kb.roles import require_role

log = logging.getLogger(__name__)

# The office's clock decides which week a search belongs to.
JST = timezone(timedelta(hours=9))
# The current week and the 51 before it: a year.
KEEP_WEEKS = 52
# How long a search waits for the write lock before giving up on logging itself.
WRITE_WAIT_MS = 200
PAGE_SIZE = 50
LISTS = {"no_results": "結果0件の検索", "unopened": "事例が開かれなかった検索"}
SORTS = {"week": "新しい週から（週ごとに多い順）", "count": "件数の多い順"}
# The count each list shows (SQL over one query_log row).
_COUNTS = {"no_results": "no_results", "unopened": "searches - no_results"}
_WHERE = {"no_results": "no_results > 0", "unopened": "opens = 0 AND searches > no_results"}
_ORDER = {"week": "week DESC, count DESC, display", "count": "count DESC, week DESC, display"}
# An address's block numbers (本町1-2-3, １ー２ー３): kb.pii flags them only with a building
# and a room, as reports write 「第1-2-3号」 too; a search query has no such use for them.
_BLOCK_NUMBER = re.compile(r"\d+\s*[-‐‑–—―−ー]\s*\d+\s*[-‐‑–—―−ー]\s*\d+")


def week_of(moment: datetime | None = None) -> str:
    """The ISO week ("2026-W48") of ``moment`` (default: now) in Japan time."""
    day = (moment or datetime.now(timezone.utc)).astimezone(JST).date()
    year, week, _ = day.isocalendar()
    return f"{year:04d}-W{week:02d}"


def week_label(week: str) -> str:
    """「2026年11月23日の週」: the Monday that starts an ISO week."""
    monday = date.fromisocalendar(int(week[:4]), int(week[6:]), 1)
    return f"{monday.year}年{monday.month}月{monday.day}日の週"


def _oldest_kept(now: datetime | None) -> str:
    return week_of((now or datetime.now(timezone.utc)) - timedelta(weeks=KEEP_WEEKS - 1))


def display_form(text: str) -> str:
    """The query as typed, with runs of blanks collapsed to one space."""
    return " ".join((text or "").split())


def normalize_query(text: str) -> str:
    """The key queries are counted under: the analyzer's folding (width, case, kana and
    spelling variants: 「ＵＳＢ　紛失」 = 「usb 紛失」, 「ファクス」 = 「FAX」) and collapsed blanks."""
    return " ".join("".join(char for char, _, _ in analysis.normalize(text or "")).split())


def is_loggable(text: str) -> bool:
    """Whether a query may be stored at all: it has a word to search for (not only
    symbols, AND/OR/NOT or lone particles), is no longer than the search reads, and the
    personal-data check finds nothing in it, nor an address's block numbers (1-2-3)."""
    shown = display_form(text)
    if not shown or len(shown) > ranking.MAX_QUERY_LENGTH:
        return False
    words = " ".join(word for word in shown.split() if word not in ranking.OPERATORS)
    if not any(not (len(token) == 1 and token in analysis.PARTICLES)
               for token, _, _ in analysis.tokens(words)):
        return False
    if _BLOCK_NUMBER.search(unicodedata.normalize("NFKC", text)):
        return False
    return not pii.scan(text)


def _write(db, sql: str, params: list) -> bool:
    """Run one statement in its own short transaction; never raise. A write lock held
    elsewhere for longer than WRITE_WAIT_MS costs the log an entry, not the user a page."""
    try:
        previous = db.conn.execute("PRAGMA busy_timeout").fetchone()[0]
        db.conn.execute(f"PRAGMA busy_timeout = {WRITE_WAIT_MS}")
        try:
            with transaction(db):
                db.execute(sql, params)
        finally:
            db.conn.execute(f"PRAGMA busy_timeout = {int(previous)}")
    except Exception as error:  # the log is a nicety: the search must still answer
        log.warning("query log not written (%s: %s)", type(error).__name__, error)
        return False
    return True


def record_search(db, text: str, *, found: int, filters: dict | None = None, page: int = 1,
                  now: datetime | None = None) -> bool:
    """Count one search of ``text`` that found ``found`` cases; return whether it was counted.

    Takes no user on purpose: who searched is never recorded. Not counted: an empty or
    unloggable query (``is_loggable``), a search with filters, a page after the first.
    Never raises.
    """
    if filters or page != 1 or not is_loggable(text):
        return False
    return _write(
        db,
        "INSERT INTO query_log (week, query_key, display, searches, no_results)"
        " VALUES (?, ?, ?, 1, ?) ON CONFLICT (week, query_key) DO UPDATE SET"
        " searches = searches + 1, no_results = no_results + excluded.no_results",
        [week_of(now), normalize_query(text), display_form(text), 1 if found == 0 else 0])


def record_open(db, text: str, *, now: datetime | None = None) -> bool:
    """Count a case opened from the results of ``text``, on the row of this week (or of
    last week, for a search made just before Monday); no row is created. Never raises."""
    if not is_loggable(text):
        return False
    this_week = week_of(now)
    last_week = week_of((now or datetime.now(timezone.utc)) - timedelta(weeks=1))
    return _write(
        db,
        "UPDATE query_log SET opens = opens + 1 WHERE query_key = ? AND week = ("
        " SELECT max(week) FROM query_log WHERE query_key = ? AND week IN (?, ?))",
        [normalize_query(text)] * 2 + [this_week, last_week])


def drop_old(db, now: datetime | None = None) -> int:
    """Delete the rows of weeks older than KEEP_WEEKS (counted from ``now``'s week);
    return how many. Idempotent; read first, so a minute with nothing to drop takes no
    write lock (it runs every minute)."""
    oldest = _oldest_kept(now)
    if db.execute("SELECT 1 FROM query_log WHERE week < ? LIMIT 1", [oldest]).fetchone() is None:
        return 0
    with transaction(db):
        return db.execute("DELETE FROM query_log WHERE week < ?", [oldest]).rowcount


@scheduler.register("drop_old_query_log")
def _drop_old_job(db, settings, now=None) -> dict:
    return {"dropped": drop_old(db, now)}


def search_log(db, actor, *, which: str = "no_results", sort: str = "week", page: int = 1,
               page_size: int | None = PAGE_SIZE, now: datetime | None = None) -> dict:
    """One page of a list of the log, for reviewers (Forbidden for anyone else).

    ``which``: "no_results" (searches that found nothing; count = those searches) or
    "unopened" (searches that found cases while none was opened that week; count = those
    searches). ``sort``: "week" (newest week first, most frequent first within it) or
    "count" (most frequent first). Unknown values fall back to the defaults; a page past
    the end shows the last. ``page_size`` None: every row (the CSV). Rows of weeks past
    the retention are never shown, even before the job has dropped them.

    Returns ``{"rows": [{"week", "week_label", "display", "count", "searches",
    "no_results", "opens"}], "total", "page", "pages", "which", "sort"}``.
    """
    require_role(actor, "reviewer")
    which = which if which in LISTS else "no_results"
    sort = sort if sort in SORTS else "week"
    where = f"WHERE week >= ? AND {_WHERE[which]}"
    params = [_oldest_kept(now)]
    total = db.execute(f"SELECT count(*) FROM query_log {where}", params).fetchone()[0]
    limit = ""
    pages = 1
    if page_size:
        pages = max(1, -(-total // page_size))
        page = min(max(1, page), pages)
        limit = f" LIMIT {int(page_size)} OFFSET {(page - 1) * int(page_size)}"
    else:
        page = 1
    rows = [dict(row, week_label=week_label(row["week"])) for row in db.query(
        f"SELECT week, display, {_COUNTS[which]} AS count, searches, no_results, opens"
        f" FROM query_log {where} ORDER BY {_ORDER[sort]}{limit}", params)]
    return {"rows": rows, "total": total, "page": page, "pages": pages, "which": which,
            "sort": sort}
