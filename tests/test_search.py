"""Search through the real index: indexing after commit, visibility, drift, the contracts."""

import io
import json
import pickle
import re
import shutil
import tracemalloc

import pytest

from kb import cases, dates, indexer, ranking, search, workflow
from kb.db import get_db, mark_changed, transaction
from tests.conftest import login
from tests.reporting import file_report, near_miss_form


def ix_of(app):
    return search.get_index(app.config["DATA_DIR"])


def ids(result):
    return [hit["case_id"] for hit in result.hits]


def find(app, user, text, **kwargs):
    with app.app_context():
        return search.search_cases(ix_of(app), get_db(), user, text, **kwargs)


@pytest.fixture
def people(make_user):
    return {
        "reporter": make_user("reporter", "staff"),
        "manager": make_user("manager", "manager"),
        "reviewer": make_user("reviewer", "reviewer", department="soumu-gyousei-joho"),
        "outsider": make_user("outsider", "staff", department="fukushi-kourei"),
    }


def filed_near_miss(client, app, people, **form):
    login(client, "reporter")
    return file_report(client, "near_miss", near_miss_form(**form))


def test_a_saved_report_is_indexed_after_commit_and_found_by_its_reporter(client, app, people):
    case_id = filed_near_miss(client, app, people, summary="ゼブラ柄の封筒で申請書を返送しそうになった。")
    assert ids(find(app, people["reporter"], "ゼブラ柄")) == [case_id]


def test_unpublished_case_is_never_in_another_departments_results(client, app, people):
    case_id = filed_near_miss(client, app, people, summary="ゼブラ柄の封筒で申請書を返送しそうになった。")
    with app.app_context():
        workflow.submit_report(get_db(), people["reporter"], case_id)
    assert ids(find(app, people["manager"], "ゼブラ柄")) == [case_id]
    assert ids(find(app, people["reviewer"], "ゼブラ柄")) == [case_id]
    assert ids(find(app, people["outsider"], "ゼブラ柄")) == []


def test_the_database_decides_even_when_the_index_is_stale(client, app, people):
    case_id = filed_near_miss(client, app, people, summary="ゼブラ柄の封筒で申請書を返送しそうになった。")
    with app.app_context():
        db = get_db()
        workflow.submit_report(db, people["reporter"], case_id)
        workflow.approve_report(db, people["manager"], case_id)
        workflow.publish_report(db, people["reviewer"], case_id)
    assert ids(find(app, people["outsider"], "ゼブラ柄")) == [case_id]
    with app.app_context():  # unpublished behind the index's back: no commit hook runs
        get_db().execute("UPDATE cases SET status = 'approved' WHERE case_id = ?", [case_id])
    assert ids(find(app, people["outsider"], "ゼブラ柄")) == []


def test_a_near_miss_without_its_day_sorts_by_its_filing_day_shown_as_such(client, app, people):
    undated = filed_near_miss(client, app, people, summary="ゼブラ柄の封筒を使いそうになった。")
    dated = file_report(client, "near_miss", near_miss_form(
        summary="ゼブラ柄の封筒に入れそうになった。", occurred_on="2020/04/01"))
    with app.app_context():
        db = get_db()
        for case_id in (undated, dated):
            workflow.submit_report(db, people["reporter"], case_id)
    result = find(app, people["reviewer"], "ゼブラ柄", sort="date")
    assert ids(result) == [undated, dated]  # filed today, then 2020
    today = dates.office_today()
    filed = f"登録日 {today.year}年{today.month}月{today.day}日"
    assert filed in client.get("/cases?q=ゼブラ柄&sort=date").get_data(as_text=True)  # the reporter
    page = client.get(f"/cases/{undated}").get_data(as_text=True)
    assert f"<dt>起きそうになった日</dt><dd>記載なし（{filed}）" in page


def test_withdrawn_cases_are_removed_from_the_index(app, people):
    with app.app_context():
        db = get_db()
        case_id = db.execute("SELECT case_id FROM cases WHERE external_id = 'ext-0001'").fetchone()[0]
        assert case_id in ids(search.search_cases(ix_of(app), db, people["outsider"], "アンケートメール"))
        with transaction(db):
            db.execute("UPDATE cases SET status = 'withdrawn' WHERE case_id = ?", [case_id])
            mark_changed(db, case_id)
        assert case_id not in ids(search.search_cases(ix_of(app), db, people["outsider"], "アンケートメール"))
        assert search.check(ix_of(app), db) == {"missing": [], "stale": [], "orphaned": []}


@pytest.mark.parametrize("chunk, procs", [(search.REBUILD_CHUNK, 1), (50, 1), (40, 2)])
def test_rebuild_gives_the_same_index_as_incremental_updates(client, app, people, monkeypatch,
                                                             chunk, procs):
    monkeypatch.setattr(search, "REBUILD_CHUNK", chunk)  # small chunks: several commits
    filed_near_miss(client, app, people, summary="ゼブラ柄の封筒で申請書を返送しそうになった。")
    file_report(client, "near_miss", near_miss_form(summary="FAXの短縮ダイヤルを押し間違えそうになった。"))
    queries = ["FAX 誤送信", "USB 紛失", "ゼブラ柄", "メール 宛先 間違い"]
    with app.app_context():
        db = get_db()
        incremental = {q: ids(search.search_cases(ix_of(app), db, people["reporter"], q)) for q in queries}
        with ix_of(app).searcher() as s:
            stored_before = sorted((f["case_id"], f["stamp"]) for f in s.all_stored_fields())
        progress = []
        count = search.rebuild(db, app.config["DATA_DIR"], progress=progress.append, procs=procs)
        rebuilt = {q: ids(search.search_cases(ix_of(app), db, people["reporter"], q)) for q in queries}
        with ix_of(app).searcher() as s:
            stored_after = sorted((f["case_id"], f["stamp"]) for f in s.all_stored_fields())
    assert stored_after == stored_before
    assert rebuilt == incremental
    assert count == len(stored_after) == sum(progress)


def test_reindex_check_reports_and_heals_drift(app, people):
    with app.app_context():
        db = get_db()
        first, second = [row[0] for row in db.execute("SELECT case_id FROM cases ORDER BY case_id LIMIT 2")]
        search.unindex_case(ix_of(app), first)                       # missing
        db.execute("UPDATE cases SET version = version + 1 WHERE case_id = ?", [second])  # stale
        with ix_of(app).writer() as writer:                          # orphaned
            writer.add_document(case_id="999999", stamp="x", title="幽霊", status="published")
    runner = app.test_cli_runner()
    result = runner.invoke(args=["reindex", "--check"])
    assert result.exit_code == 1
    assert f"missing: 1 ({first})" in result.output
    assert f"stale: 1 ({second})" in result.output
    assert "orphaned: 1 (999999)" in result.output
    again = runner.invoke(args=["reindex", "--check"])
    assert again.exit_code == 0, again.output
    assert "index matches the database" in again.output


def test_reindex_rebuilds_from_the_database(app):
    result = app.test_cli_runner().invoke(args=["reindex"])
    assert result.exit_code == 0, result.output
    assert "indexed 180 cases" in result.output


def test_missing_or_old_index_is_rebuilt_when_the_app_starts(data_dir):
    from tests.conftest import make_app
    shutil.rmtree(search.index_path(data_dir))
    (data_dir / "index-v0.0").mkdir()  # an index of an older schema
    app = make_app(data_dir)
    assert search.is_current(data_dir)
    assert not (data_dir / "index-v0.0").exists()
    with app.app_context():
        assert search.check(search.get_index(data_dir), get_db()) == \
            {"missing": [], "stale": [], "orphaned": []}


@pytest.mark.parametrize("variants", [
    ("ＦＡＸ 誤送信", "FAX 誤送信", "ファクス 誤送信", "ファックス 誤送信"),
    ("ＵＳＢ 紛失", "USB 紛失"),
    ("ろうえい 研修", "漏えい 研修", "漏洩 研修"),
])
def test_orthographic_variants_return_the_same_top_ten(app, people, variants):
    results = [ids(find(app, people["outsider"], text, page_size=10)) for text in variants]
    assert results[0]
    assert all(result == results[0] for result in results)


def test_a_type_word_lifts_cases_of_that_type(app, people):
    result = find(app, people["outsider"], "BCC")
    assert [hit["incident_type"] for hit in result.hits[:10]] == ["email_missend"] * 10


@pytest.mark.parametrize("text", ['"FAX 誤送信', "(FAX", "FAX AND", "NOT", "*", "title:FAX",
                                  ":::", '"""', "FAX) OR (USB", "~^!", "a" * 500])
def test_query_syntax_typed_by_accident_never_raises(app, people, text):
    result = find(app, people["outsider"], text)
    assert result.total >= 0


def test_quoted_phrase_and_exclusion(app, people):
    everything = find(app, people["outsider"], "FAX")
    without = find(app, people["outsider"], "FAX -医療機関")
    assert 0 < without.total < everything.total
    phrase = find(app, people["outsider"], '"宛先欄"', page_size=50)
    loose = find(app, people["outsider"], "宛先 欄", page_size=50)
    assert 1 <= phrase.total < loose.total


def test_long_queries_are_cut_with_a_notice(app, people):
    result = find(app, people["outsider"], "FAX " * 60)
    assert any("先頭の100文字" in notice for notice in result.notices)


def test_facets_count_the_matching_cases(app, people):
    result = find(app, people["outsider"], "", filters={"incident_type": "fax_missend"}, page_size=50)
    assert result.total == 13
    assert result.facets["incident_type"] == {"fax_missend": 13}
    assert sum(result.facets["origin"].values()) == 13
    assert result.facets["task"] == {"fax": 13}


def test_sort_by_date_puts_the_newest_first(app, people):
    result = find(app, people["outsider"], "メール", sort="date", page_size=30)
    dates = [h["occurred_on"] or h["discovered_on"] or h["published_on"] or "" for h in result.hits]
    dated = [d for d in dates if d]
    assert dated == sorted(dated, reverse=True)


def test_snippets_mark_the_original_spelling_and_escape_the_rest():
    terms = frozenset({"fax", "送信"})
    html = str(ranking.snippet("<b>注意</b> ＦＡＸで送信した", terms))
    assert "&lt;b&gt;注意&lt;/b&gt;" in html
    assert "<mark>ＦＡＸ</mark>" in html and "<mark>送信</mark>" in html


def test_search_page_shows_highlights_filters_and_counts(client, signed_in):
    signed_in("staff")
    html = client.get("/cases?q=ファクス&incident_type=fax_missend").get_data(as_text=True)
    assert "13件の事例" in html
    assert "<mark>FAX</mark>" in html or "<mark>ＦＡＸ</mark>" in html
    assert 'class="chip"' in html and "種別：FAX誤送信" in html
    assert 'href="/cases?q=%E3%83%95%E3%82%A1%E3%82%AF%E3%82%B9"' in html  # remove the filter


def test_unknown_filter_values_are_ignored_with_a_notice(client, signed_in):
    signed_in("staff")
    html = client.get("/cases?q=FAX&task=teleport&year=20x5").get_data(as_text=True)
    assert "「作業」の条件「teleport」は使えないため外しました。" in html
    assert "「年」の条件「20x5」は使えないため外しました。" in html


def test_empty_query_goes_to_the_task_page(client, signed_in):
    signed_in("staff")
    response = client.get("/cases?q=+")
    assert response.status_code == 302 and response.headers["Location"] == "/"


def test_no_results_suggest_broader_words(client, signed_in):
    signed_in("staff")
    html = client.get("/cases?q=FAX ゾウガメ天体望遠鏡").get_data(as_text=True)
    assert "言葉を減らすと見つかるかもしれません" in html or "件の事例" in html


def test_search_json_contract_on_the_command_line(app):
    result = app.test_cli_runner().invoke(args=["search", "USB 紛失", "--json", "--limit", "5"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) == {"total", "hits"} and data["total"] >= 5
    assert len(data["hits"]) == 5
    assert set(data["hits"][0]) == {"case_id", "external_id", "title", "score"}
    assert re.fullmatch(r"ext-\d{4}", data["hits"][0]["external_id"])


def test_search_json_over_http_needs_login_and_matches_the_command(client, signed_in, app):
    assert client.get("/api/search?q=USB").status_code == 401
    signed_in("staff")
    data = client.get("/api/search?q=USB 紛失&limit=5").get_json()
    cli = json.loads(app.test_cli_runner().invoke(args=["search", "USB 紛失", "--json", "--limit", "5"]).output)
    assert [h["case_id"] for h in data["hits"]] == [h["case_id"] for h in cli["hits"]]
    assert data["total"] == cli["total"]


def test_case_page_shows_similar_cases(client, signed_in, app):
    signed_in("staff")
    with app.app_context():
        case_id = get_db().execute("SELECT case_id FROM cases WHERE external_id = 'ext-0009'").fetchone()[0]
    html = client.get(f"/cases/{case_id}").get_data(as_text=True)
    similar = html.split("似ている事例", 1)[1].split("</section>", 1)[0]
    assert similar.count("<li>") == 5
    assert f'href="/cases/{case_id}"' not in similar


def test_similar_json_for_the_filing_form(client, signed_in):
    signed_in("staff")
    data = client.get("/api/similar?text=FAXの番号を誤って別の事業所に送信した").get_json()
    assert data["hits"]
    assert any("FAX" in hit["title"] or "ファクス" in hit["title"] for hit in data["hits"][:3])
    assert set(data["hits"][0]) >= {"case_id", "title", "url", "countermeasures"}


def test_front_page_task_shows_its_checklist_items_and_cases(client, signed_in):
    signed_in("staff")
    html = client.get("/?task=fax").get_data(as_text=True)
    assert html.count('class="item-code"') == 5
    assert "この作業で起きた事例" in html and "FAX誤送信" in html


def test_a_search_past_its_time_limit_is_flagged_partial_and_not_cached(app, people):
    hurried = find(app, people["outsider"], "FAX 誤送信", time_limit=0.0)
    assert hurried.partial
    assert any("途中までの結果" in notice for notice in hurried.notices)
    relaxed = find(app, people["outsider"], "FAX 誤送信")
    assert not relaxed.partial and relaxed.total > hurried.total


def test_warming_loads_every_segment_before_the_first_search(app):
    search._segments.clear()
    search.warm(app.config["DATA_DIR"])
    with ix_of(app).searcher() as searcher:
        ids = {reader.segment().segment_id() for reader, _ in searcher.reader().leaf_readers()}
    assert ids and ids <= {segment_id for _, segment_id in search._segments}


def test_a_search_reads_the_index_where_it_is_mapped_instead_of_copying_it(app, people):
    # Whoosh's BufferFile copied every compound segment's postings and terms into the
    # process's private memory at each search: 70 MB a search at 100,000 cases (issue #14).
    segments = sum(path.stat().st_size
                   for path in search.index_path(app.config["DATA_DIR"]).glob("*.seg"))
    assert segments > 100_000  # the seed cases: enough to tell a copy from the search's own needs
    find(app, people["outsider"], "FAX 誤送信")  # columns, vocabulary and templates loaded once
    search._cache.clear()
    tracemalloc.start()
    try:
        result = find(app, people["outsider"], "個人情報 紛失 委託")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.total > 0
    assert peak < segments / 4


def test_the_in_place_index_file_reads_like_an_in_memory_copy():
    data = b"header\n" + bytes(range(256)) * 3 + b"\nlast line"
    window, copy = search._Window(memoryview(data)), io.BytesIO(data)
    for call in [("read", 3), ("readline",), ("tell",), ("seek", 10), ("read", 0), ("readline", 5),
                 ("seek", -4, 2), ("read", 10), ("read",), ("seek", 3, 1), ("tell",),
                 ("seek", 700), ("readline",), ("readline",), ("read", 5)]:
        assert getattr(window, call[0])(*call[1:]) == getattr(copy, call[0])(*call[1:]), call
    window.seek(0)
    target = bytearray(6)
    assert window.readinto(target) == 6 and target == b"header"
    assert window.peek(4) == b"\n\x00\x01\x02" and window.tell() == 6
    assert pickle.load(search._Window(memoryview(pickle.dumps({"ids": [1, 2], "w": 0.5})))) == \
        {"ids": [1, 2], "w": 0.5}


def test_background_indexing_catches_up_after_the_save(data_dir, make_user):
    from tests.conftest import make_app

    app = make_app(data_dir, INDEX_IN_BACKGROUND=True)
    reporter = make_user("bg-reporter", "staff")
    client = app.test_client()
    login(client, "bg-reporter")
    case_id = file_report(client, "near_miss", near_miss_form(summary="背景索引ゼブラ柄の封筒で返送しそうになった。"))
    assert indexer.flush(data_dir)
    assert ids(find(app, reporter, "ゼブラ柄")) == [case_id]


def leaves(searcher):
    return [reader for reader, _ in searcher.reader().leaf_readers()]


def test_after_a_merge_every_case_is_found_once_and_old_segment_data_is_let_go(client, app, people,
                                                                               monkeypatch):
    # Only the cases holding the word: feedback would add cases sharing 封筒 with them.
    monkeypatch.setattr(ranking, "FEEDBACK_DOCS", 0)
    ix = ix_of(app)
    folder = ix.storage.folder
    login(client, "reporter")
    filed = [file_report(client, "near_miss", near_miss_form(summary=f"ゼブラ柄の封筒 その{n}。"))
             for n in range(3)]
    assert len(ids(find(app, people["reporter"], "ゼブラ柄"))) == 3  # caches the segments' data
    assert len({key for key in search._segments if key[0] == folder}) > 1
    ix.optimize()  # merges every segment into one, as Whoosh's merges do over time
    with app.app_context():
        expected = get_db().execute("SELECT count(*) FROM cases WHERE status != 'withdrawn'").fetchone()[0]
    with search.open_searcher(ix) as searcher:
        assert searcher.doc_count() == expected
        live = {reader.segment().segment_id() for reader in leaves(searcher)}
    assert len(live) == 1
    assert sorted(ids(find(app, people["reporter"], "ゼブラ柄"))) == sorted(filed)
    assert {segment_id for key_folder, segment_id in search._segments if key_folder == folder} <= live


def case_ids_by_docnum(ix):
    """Each segment's (array of case ids, stored case ids, live docnums)."""
    with search.open_searcher(ix) as searcher:
        segments = []
        for reader, _ in search._segment_readers(searcher):
            data = search._segment_data(ix.storage.folder, reader, searcher.doc_count_all())
            stored = [int(reader.stored_fields(docnum)["case_id"])
                      for docnum in range(reader.doc_count_all())]  # deleted ones included
            segments.append((list(data.case_ids), stored, set(reader.all_doc_ids())))
        return segments


def test_a_hit_is_the_case_of_its_document_after_updates_deletions_and_a_merge(app, people,
                                                                                monkeypatch):
    monkeypatch.setattr(ranking, "FEEDBACK_DOCS", 0)  # only the cases holding the words
    ix = ix_of(app)
    with app.app_context():
        db = get_db()
        published = [row[0] for row in db.execute(
            "SELECT case_id FROM cases WHERE status = 'published' ORDER BY case_id")]
        edited, withdrawn, last = published[0], published[1], published[-1]
        with transaction(db):  # re-indexed: its document is deleted and added again, elsewhere
            db.execute("UPDATE cases SET summary = 'ゼブラ柄の封筒で通知書を返送した。' "
                       "WHERE case_id = ?", [edited])
            mark_changed(db, edited)
        with transaction(db):  # its document deleted
            db.execute("UPDATE cases SET status = 'withdrawn' WHERE case_id = ?", [withdrawn])
            mark_changed(db, withdrawn)
        with transaction(db):
            db.execute("UPDATE cases SET summary = 'ペンギンの絵はがきを誤って投函した。' "
                       "WHERE case_id = ?", [last])
            mark_changed(db, last)
        indexed = set(cases.index_stamps(db))
    for merged in (False, True):
        if merged:
            ix.optimize()  # one new segment: its documents numbered afresh
        segments = case_ids_by_docnum(ix)
        if not merged:  # the seed's segment now holds deleted documents before live ones
            assert any(len(live) < len(array) for array, _, live in segments)
        for array, stored, live in segments:
            assert array == stored  # one entry per document number, deleted ones too
        assert sorted(case_id for array, _, live in segments for docnum, case_id
                      in enumerate(array) if docnum in live) == sorted(indexed)
        assert ids(find(app, people["outsider"], "ゼブラ柄")) == [edited]
        assert ids(find(app, people["outsider"], "ペンギン")) == [last]
        assert ids(find(app, people["outsider"], "ゼブラ柄", sort="date")) == [edited]
        search._cache.clear()


def test_a_search_reads_no_stored_fields(app, people, monkeypatch):
    # Reading a hit's stored fields made each new searcher load the segment's offsets of
    # them again: 1-5 ms per segment and search (README, Performance; issue #14).
    from whoosh.reading import SegmentReader

    read = []
    stored_fields = SegmentReader.stored_fields
    monkeypatch.setattr(SegmentReader, "stored_fields",
                        lambda reader, docnum: read.append(docnum) or stored_fields(reader, docnum))
    result = find(app, people["outsider"], "FAX 誤送信")
    assert result.hits and result.related  # the feedback's best cases were looked up too
    assert find(app, people["outsider"], "", sort="date").hits
    with app.app_context():
        assert search.similar_cases(ix_of(app), get_db(), people["outsider"],
                                    text="FAXの番号を誤って別の事業所に送信した")
    assert read == []


def test_whoosh_refresh_keeps_segments_a_merge_replaced_so_we_do_not_use_it(tmp_path):
    """Why kb.search builds its own searchers: in whoosh-reloaded 2.7.5 (pinned),
    Searcher.refresh() after a merge still holds the merged-away segments."""
    from whoosh import fields, index

    ix = index.create_in(tmp_path, fields.Schema(case_id=fields.ID(stored=True, unique=True)))
    for n in range(3):
        writer = ix.writer()
        writer.add_document(case_id=str(n))
        writer.commit(merge=False)
    stale = ix.searcher()
    writer = ix.writer()
    writer.add_document(case_id="3")
    writer.commit(optimize=True)
    assert stale.refresh().doc_count() > 4  # the bug: documents counted twice
    with search.open_searcher(ix) as searcher:
        assert searcher.doc_count() == 4


def test_an_index_without_documents_finds_nothing_instead_of_failing(client, app, signed_in):
    with app.app_context():
        db = get_db()
        with transaction(db):
            db.execute("UPDATE cases SET status = 'withdrawn'")
        search.rebuild(db, app.config["DATA_DIR"])  # nothing left to index
    signed_in("staff")
    response = client.get("/cases?q=FAX")
    assert response.status_code == 200
    assert "0件の事例" in response.get_data(as_text=True)


def _scores(client, query):
    data = client.get(f"/api/search?q={query}&limit=50").get_json()
    return data["total"], [(hit["case_id"], hit["score"]) for hit in data["hits"]]


def _cli_search(app, query):
    return json.loads(app.test_cli_runner().invoke(
        args=["search", query, "--json", "--limit", "20"]).output)


@pytest.mark.parametrize("draft_summary", [
    "USBメモリを紛失しそうになった。USBは鞄の底にあった。",  # holds the words searched for
    "窓口で申請書を取り違えそうになった。",  # lacks them
])
def test_scores_and_order_do_not_reveal_what_another_departments_draft_holds(
        client, app, people, draft_summary):
    outsider = app.test_client()
    login(outsider, "outsider")
    before, cli_before = _scores(outsider, "USB 紛失"), _cli_search(app, "USB 紛失")
    assert before[1] and before[1][0][1] > 0
    filed_near_miss(client, app, people, summary=draft_summary)
    assert _scores(outsider, "USB 紛失") == before
    assert _cli_search(app, "USB 紛失") == cli_before


def test_similar_cases_do_not_depend_on_unpublished_drafts(client, app, people):
    outsider = app.test_client()
    login(outsider, "outsider")
    url = "/api/similar?text=USBメモリを庁外に持ち出して紛失した"
    before = outsider.get(url).get_json()
    assert before["hits"]
    # Drafts that make the typed words common: key terms counted over every document
    # would weigh them down and show other cases.
    login(client, "reporter")
    for _ in range(5):
        file_report(client, "near_miss", near_miss_form(
            summary="USBメモリを庁外に持ち出して紛失しそうになった。", task="media"))
    assert outsider.get(url).get_json() == before


def _reindex_in_another_process(data_dir):
    """`flask reindex` run by an operator while the server runs: another process, so
    nothing of this process's caches is cleared by it."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "reindex", "--procs", "1"],
        cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=120,
        env=dict(os.environ, KB_DATA_DIR=str(data_dir), KB_SECRET_KEY="reindex-test-secret"))
    assert result.returncode == 0, result.stderr


def test_a_reindex_by_another_process_is_searched_at_once_not_the_old_indexs_results(app, people):
    # The rebuilt index is swapped in under the same folder name and counts its generations
    # from the start again: results cached for the old index must not answer for the new.
    with app.app_context():
        db = get_db()
        case_id = db.execute("SELECT case_id FROM cases WHERE status = 'published' "
                             "ORDER BY case_id LIMIT 1").fetchone()[0]
        # Changed behind the index's back (a bulk fix in SQL): what `reindex` is run for.
        db.execute("UPDATE cases SET summary = 'ゼブラ柄の封筒で通知書を返送した。' "
                   "WHERE case_id = ?", [case_id])
        generation = ix_of(app).latest_generation()
    assert ids(find(app, people["outsider"], "ゼブラ柄")) == []  # the index does not know yet
    _reindex_in_another_process(app.config["DATA_DIR"])
    assert ix_of(app).latest_generation() == generation  # the same number, another index
    assert ids(find(app, people["outsider"], "ゼブラ柄")) == [case_id]


def test_a_search_during_another_processs_swap_waits_for_it(app, people):
    # `flask reindex` beside the server swaps folders without the server's lock: a search
    # between its two renames must wait for the new folder, not create an empty one there
    # (which made the second rename fail and every search find nothing).
    import threading

    data_dir = app.config["DATA_DIR"]
    path = search.index_path(data_dir)
    aside = path.with_name(path.name + ".old")
    path.rename(aside)  # the other process's first rename
    opened = []
    searching = threading.Thread(target=lambda: opened.append(search.get_index(data_dir)))
    searching.start()
    searching.join(timeout=0.2)
    assert searching.is_alive() and not path.exists()  # waiting, nothing created
    aside.rename(path)  # its second rename (here: the same index back in place)
    searching.join()
    with search.open_searcher(opened[0]) as searcher:
        assert searcher.doc_count() > 0
    assert find(app, people["outsider"], "FAX 誤送信").hits


def test_a_search_during_a_rebuilds_swap_waits_for_it_instead_of_emptying_the_index(app, people,
                                                                                    monkeypatch):
    # The recovery thread (or `reindex`) renames the old folder away and the new one in:
    # a search that opened the index between the two renames created an empty index in
    # its place, the second rename then failed, and every search found nothing.
    import pathlib
    import threading

    data_dir = app.config["DATA_DIR"]
    path = search.index_path(data_dir)
    rename, searches = pathlib.Path.rename, []

    def rename_with_a_search_between(self, target):
        moved = rename(self, target)
        if self == path:  # the old index is out of the way, the new one not yet in
            searches.append(threading.Thread(target=search.get_index, args=(data_dir,)))
            searches[0].start()
            searches[0].join(timeout=0.5)
        return moved

    monkeypatch.setattr(pathlib.Path, "rename", rename_with_a_search_between)
    with app.app_context():
        search.rebuild(get_db(), data_dir)
    monkeypatch.undo()
    searches[0].join()
    with app.app_context():
        assert search.check(ix_of(app), get_db()) == {"missing": [], "stale": [], "orphaned": []}
    assert find(app, people["outsider"], "FAX 誤送信").hits
