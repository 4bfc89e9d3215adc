"""Pseudo-relevance feedback (kb.ranking.feedback, run by kb.search): the first ranking's
best cases widen the query, through the real index and the seed corpus."""

import pytest

from kb import ranking, search
from tests.conftest import login
from tests.reporting import file_report, near_miss_form
from tests.test_search import find, ids, ix_of, people  # noqa: F401 - the fixture

SHARED = "虹色クリップで留めた名簿"


SUMMARIES = (f"ゼブラ柄の封筒に{SHARED}を入れそうになった。",
             f"ゼブラ柄の封筒と{SHARED}を取り違えそうになった。",
             f"ゼブラ柄の箱に{SHARED}をしまい忘れそうになった。")
ONLY_SHARED = f"窓口で{SHARED}を別の人に渡しそうになった。"


@pytest.fixture
def reports(client, app, people):  # noqa: F811
    """Three reports holding the typed word ゼブラ柄 and a fourth that holds only what they
    share (虹色クリップで留めた名簿), all the reporter's own."""
    login(client, "reporter")
    return [file_report(client, "near_miss", near_miss_form(summary=summary))
            for summary in (*SUMMARIES, ONLY_SHARED)]


def test_feedback_finds_a_case_holding_no_typed_word_but_what_the_best_cases_share(
        app, people, reports):  # noqa: F811
    found = ids(find(app, people["reporter"], "ゼブラ柄"))
    assert set(found[:3]) == set(reports[:3])
    assert found[3] == reports[3]


def test_without_feedback_the_case_holding_no_typed_word_is_not_found(
        app, people, reports, monkeypatch):  # noqa: F811
    monkeypatch.setattr(ranking, "FEEDBACK_DOCS", 0)
    assert set(ids(find(app, people["reporter"], "ゼブラ柄"))) == set(reports[:3])


def test_two_hits_add_no_feedback_words(client, app, people):  # noqa: F811
    # Two cases share chance bigrams: with 「電車」 (two hits in the seed corpus) they had
    # listed 178 of the 180 cases as related. Two agreeing cases may still lift their type.
    login(client, "reporter")
    typed = [file_report(client, "near_miss", near_miss_form(summary=summary))
             for summary in SUMMARIES[:2]]
    other = file_report(client, "near_miss", near_miss_form(summary=ONLY_SHARED))
    found = ids(find(app, people["reporter"], "ゼブラ柄", page_size=1000))
    assert set(found[:2]) == set(typed) and other not in found


@pytest.mark.parametrize("text", ["ゼブラ柄 -葛飾北斎", '"ゼブラ柄"'])
def test_a_query_with_an_exclusion_or_a_quoted_phrase_is_not_widened(
        app, people, reports, text):  # noqa: F811
    assert set(ids(find(app, people["reporter"], text))) == set(reports[:3])


def test_feedback_lifts_a_type_only_when_most_of_the_best_cases_agree():
    plan = ranking.Plan()
    assert ranking.feedback(plan, ["fax_missend"] * 3 + ["email_missend"] * 2, [], None).types \
        == {"fax_missend": pytest.approx(0.6 * ranking.FEEDBACK_TYPE_WEIGHT)}
    assert ranking.feedback(plan, ["fax_missend", "fax_missend", "email_missend", "media_loss",
                                   "document_loss"], [], None).types == {}
    # One case is no agreement, and a case without a type names none.
    assert ranking.feedback(plan, ["fax_missend"], [], None).types == {}
    assert ranking.feedback(plan, ["", "", ""], [], None).types == {}


def test_feedback_words_are_shared_by_two_best_cases_and_not_typed_or_generic():
    plan = ranking.Plan(terms=frozenset({"ゼブ", "ブラ", "ラ柄"}))
    added = ranking.feedback(plan, [], ["ゼブラ柄の個人情報と虹色", "ゼブラ柄の個人情報と虹色", "鉛筆"],
                             lambda tokens: 2.0)
    words = {word.tokens[0] for word in added.words}
    assert "虹色" in words and "鉛筆" not in words
    assert not words & {"ゼブ", "ブラ", "ラ柄", "情報"}  # typed, or a word every case is about
    assert all(word.weight == pytest.approx(ranking.FEEDBACK_TERM_WEIGHT * 2 / 3 * 2.0)
               for word in added.words)


def test_feedback_takes_no_word_that_a_quarter_of_the_cases_hold_nor_any_from_two_cases():
    plan = ranking.Plan()
    texts = ["虹色の会社", "虹色の会社", "鉛筆"]
    # 会社 is held by a third of the cases (IDF log(1 + 3)), 虹色 by one in a hundred.
    idf = {"虹色": ranking.idf(100, 1), "会社": ranking.idf(99, 33)}
    words = {w.tokens[0] for w in ranking.feedback(plan, [], texts, lambda t: idf.get(t[0], 0.1)).words}
    assert "虹色" in words and "会社" not in words
    assert ranking.feedback(plan, ["fax_missend"] * 2, texts[:2], lambda t: 5.0).words == []


def test_postings_read_a_block_at_a_time_are_the_postings_whoosh_lists(app):
    ix = ix_of(app)
    with search.open_searcher(ix) as searcher:
        for reader, offset in search._segment_readers(searcher):
            view = search._View(reader, offset, searcher, ix.storage.folder)
            for name, token in [("body", "送付"), ("body", "紛失"), ("title", "fax"),
                                ("body", "した"), ("meta", "住所"), ("body", "存在しない語")]:
                try:
                    listed = list(reader.postings(name, token).all_ids())
                except Exception:  # TermNotFound
                    listed = []
                assert sorted(map(int, view._postings(name, token).nonzero()[0])) == listed


def test_a_case_only_feedback_found_is_flagged_counted_and_ranked_after_the_others(
        app, people, reports):  # noqa: F811
    result = find(app, people["reporter"], "ゼブラ柄")
    flags = [hit["related"] for hit in result.hits]
    assert flags[:3] == [False] * 3 and flags[3:] and all(flags[3:])
    assert result.related == result.total - 3 and result.hits[3]["case_id"] == reports[3]
    assert result.hits[3]["score"] > 0  # shown as its own lift, not below the tier


def test_an_exact_search_gets_no_feedback(app, people, reports):  # noqa: F811
    result = find(app, people["reporter"], "ゼブラ柄", exact=True)
    assert set(ids(result)) == set(reports[:3]) and result.related == 0


def test_the_result_page_lists_related_cases_under_their_own_heading(
        client, app, people, reports):  # noqa: F811
    *typed, only_shared = reports
    html = client.get("/cases?q=ゼブラ柄").get_data(as_text=True)
    related = find(app, people["reporter"], "ゼブラ柄").related
    assert f"{3 + related}件の事例（入力した言葉を含む 3件と、関連する事例 {related}件）" in html
    heading = html.index('id="related-heading"')
    assert all(html.index(f'/cases/{case_id}?') < heading for case_id in typed)
    assert html.index(f'/cases/{only_shared}?') > heading
    assert '<ol class="case-list case-list-related" start="4"' in html
    assert "入力した言葉だけで検索する" in html[heading:]
    exact = client.get("/cases?q=ゼブラ柄&exact=1").get_data(as_text=True)
    assert 'id="related-heading"' not in exact and f"/cases/{only_shared}?" not in exact
    assert "3件の事例" in exact


def test_the_command_line_marks_related_cases_but_keeps_the_json_contract(app):
    from kb import users
    result = find(app, users.READER, "USB 紛失", page_size=1000)
    assert result.related > 0
    runner = app.test_cli_runner()
    text = runner.invoke(args=["search", "USB 紛失", "--limit", "1000"]).output
    assert f"({result.related} related)" in text
    assert text.count("  (related)") == result.related
    data = runner.invoke(args=["search", "USB 紛失", "--json", "--limit", "1000"]).output
    assert '"related"' not in data
