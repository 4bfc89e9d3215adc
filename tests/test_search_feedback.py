"""Pseudo-relevance feedback (kb.ranking.feedback, run by kb.search): the first ranking's
best cases widen the query, through the real index and the seed corpus."""

import pytest

from kb import ranking, search
from tests.conftest import login
from tests.reporting import file_report, near_miss_form
from tests.test_search import find, ids, ix_of, people  # noqa: F401 - the fixture

SHARED = "虹色クリップで留めた名簿"


@pytest.fixture
def three_reports(client, app, people):  # noqa: F811
    """Two reports holding the typed word ゼブラ柄 and a third that holds only what the two
    share (虹色クリップで留めた名簿), all the reporter's own."""
    login(client, "reporter")
    return [file_report(client, "near_miss", near_miss_form(summary=summary)) for summary in (
        f"ゼブラ柄の封筒に{SHARED}を入れそうになった。",
        f"ゼブラ柄の封筒と{SHARED}を取り違えそうになった。",
        f"窓口で{SHARED}を別の人に渡しそうになった。")]


def test_feedback_finds_a_case_holding_no_typed_word_but_what_the_best_cases_share(
        app, people, three_reports):  # noqa: F811
    first, second, third = three_reports
    found = ids(find(app, people["reporter"], "ゼブラ柄"))
    assert set(found[:2]) == {first, second}
    assert found[2] == third


def test_without_feedback_the_case_holding_no_typed_word_is_not_found(
        app, people, three_reports, monkeypatch):  # noqa: F811
    monkeypatch.setattr(ranking, "FEEDBACK_DOCS", 0)
    assert set(ids(find(app, people["reporter"], "ゼブラ柄"))) == set(three_reports[:2])


@pytest.mark.parametrize("text", ["ゼブラ柄 -葛飾北斎", '"ゼブラ柄"'])
def test_a_query_with_an_exclusion_or_a_quoted_phrase_is_not_widened(
        app, people, three_reports, text):  # noqa: F811
    assert set(ids(find(app, people["reporter"], text))) == set(three_reports[:2])


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
                             lambda tokens: 1.0)
    words = {word.tokens[0] for word in added.words}
    assert "虹色" in words and "鉛筆" not in words
    assert not words & {"ゼブ", "ブラ", "ラ柄", "情報"}  # typed, or a word every case is about
    assert all(word.weight == pytest.approx(ranking.FEEDBACK_TERM_WEIGHT * 2 / 3)
               for word in added.words)


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
        app, people, three_reports):  # noqa: F811
    result = find(app, people["reporter"], "ゼブラ柄")
    flags = [hit["related"] for hit in result.hits]
    assert flags[:2] == [False, False] and flags[2:] and all(flags[2:])
    assert result.related == result.total - 2 and result.hits[2]["case_id"] == three_reports[2]
    assert result.hits[2]["score"] > 0  # shown as its own lift, not below the tier


def test_an_exact_search_gets_no_feedback(app, people, three_reports):  # noqa: F811
    result = find(app, people["reporter"], "ゼブラ柄", exact=True)
    assert set(ids(result)) == set(three_reports[:2]) and result.related == 0


def test_the_result_page_lists_related_cases_under_their_own_heading(
        client, app, people, three_reports):  # noqa: F811
    first, second, third = three_reports
    html = client.get("/cases?q=ゼブラ柄").get_data(as_text=True)
    related = find(app, people["reporter"], "ゼブラ柄").related
    assert f"{2 + related}件の事例（入力した言葉を含む 2件と、関連する事例 {related}件）" in html
    heading = html.index('id="related-heading"')
    assert html.index(f'/cases/{first}?') < heading and html.index(f'/cases/{second}?') < heading
    assert html.index(f'/cases/{third}?') > heading
    assert '<ol class="case-list case-list-related" start="3"' in html
    assert "入力した言葉だけで検索する" in html[heading:]
    exact = client.get("/cases?q=ゼブラ柄&exact=1").get_data(as_text=True)
    assert 'id="related-heading"' not in exact and f"/cases/{third}?" not in exact
    assert "2件の事例" in exact


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
