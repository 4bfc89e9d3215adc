"""The office's search vocabulary (言い換え): the core, its pages and CSV, and search using it
through the real index — every seed group entry by entry, like the folding table."""

import csv
import io
import json
import re
import shutil
from pathlib import Path

import pytest

from kb import analysis, ranking, search, users, vocabulary
from kb.db import get_db, mark_changed, transaction, utcnow
from kb.exceptions import Conflict, Forbidden, Invalid, NotFound
from kb.vocabulary import Draft
from tests.conftest import csrf_token, make_app, post_form

SEED = Path(__file__).resolve().parent.parent / "data" / "seed" / "vocabulary.csv"
SEED_GROUPS = [draft for _, draft in vocabulary.read_csv(SEED.read_bytes())]
TOWN = "テスト町"  # the municipality of the cases these tests add: a filter isolates them


@pytest.fixture
def reviewer(make_user):
    return make_user("rev", "reviewer", department="soumu-gyousei-joho")


def errors_of(call) -> dict:
    with pytest.raises(Invalid) as caught:
        call()
    return caught.value.errors


def add_case(db, text: str) -> int:
    """A published case whose only words are ``text`` (its summary), indexed after commit."""
    now = utcnow()
    with transaction(db):
        case_id = db["cases"].insert({
            "kind": "incident", "origin": "external", "status": "published",
            "external_id": f"vocab-{abs(hash(text))}-{now}", "title": "qa", "summary": text,
            "municipality": TOWN, "incident_type": "other", "published_on": "2026-01-01",
            "created_at": now, "updated_at": now, "published_at": now}).last_pk
        mark_changed(db, case_id)
    return case_id


def found(app, db, text: str, *, exact=False) -> set[int]:
    ix = search.get_index(app.config["DATA_DIR"])
    result = search.search_cases(ix, db, users.READER, text, filters={"municipality": TOWN},
                                 page_size=100, exact=exact)
    return {hit["case_id"] for hit in result.hits}


# --- the core: validation, direction, conflicts, versions, audit ----------------------

def test_a_group_with_one_word_is_refused_with_a_message(db, reviewer):
    errors = errors_of(lambda: vocabulary.create_group(db, reviewer, Draft(["紛失"], [])))
    assert errors["words"] == ["語を2つ以上入れてください（1つだけでは言い換えになりません）。"]


def test_an_empty_word_a_long_word_and_an_unsearchable_word_are_refused(db, reviewer):
    errors = errors_of(lambda: vocabulary.create_group(
        db, reviewer, Draft(vocabulary.split_words("紛失、、なくした、" + "あ" * 31 + "、！？"), [])))
    assert any("空の語があります" in m for m in errors["words"])
    assert any("30文字を超えています（31文字）" in m for m in errors["words"])
    assert any("「！？」には検索に使える文字" in m for m in errors["words"])
    assert vocabulary.current_version(db) == 1  # only the seed: nothing written


def test_spelling_variants_are_duplicates_within_a_group(db, reviewer):
    errors = errors_of(lambda: vocabulary.create_group(db, reviewer, Draft(["FAX", "ﾌｧｸｽ", "複合機"], [])))
    assert errors["words"] == ["「FAX」と「ﾌｧｸｽ」は検索では同じ語として扱われます（表記のゆれは自動で"
                               "そろえています）。どちらか1つにしてください。"]


def test_a_word_narrower_in_one_group_and_broad_in_another_is_a_conflicting_direction(db, reviewer):
    # Seed: 「ラベル」 is broad, 宛名シール narrower. Making 宛名シール broad elsewhere conflicts.
    errors = errors_of(lambda: vocabulary.create_group(db, reviewer, Draft(["宛名シール", "タックシール"], [])))
    assert "「宛名シール」は別のグループ（ラベル・宛名シール・宛名ラベル）では狭い語です。" in errors["words"][0]
    errors = errors_of(lambda: vocabulary.create_group(db, reviewer, Draft(["シール"], ["ラベル"])))
    assert "「ラベル」は別のグループ（ラベル・宛名シール・宛名ラベル）では広い語です。" in errors["narrower"][0]


def test_a_group_needs_a_broad_word_and_may_not_repeat_another_group(db, reviewer):
    errors = errors_of(lambda: vocabulary.create_group(db, reviewer, Draft([], ["甲", "乙"])))
    assert "広い語（狭い語から見つけたい語）を1つ以上入れてください。" in errors["words"][0]
    errors = errors_of(lambda: vocabulary.create_group(db, reviewer, Draft(["住民基本台帳", "住基"], [])))
    assert errors["words"] == ["同じ語のグループがすでにあります（住基・住民基本台帳）。"]


@pytest.fixture
def no_feedback(monkeypatch):
    """What the vocabulary alone finds: pseudo-relevance feedback (tests/test_search_feedback.py)
    also adds cases that share words with the best hits, which here are these few cases."""
    monkeypatch.setattr(ranking, "FEEDBACK_DOCS", 0)


def test_a_word_in_two_groups_finds_both_and_expansion_is_not_transitive(app, db, no_feedback):
    sent_post, sent_mail, sent = add_case(db, "送付"), add_case(db, "送信"), add_case(db, "送った")
    assert found(app, db, "送った") >= {sent_post, sent_mail, sent}
    assert sent_mail not in found(app, db, "送付")
    assert sent_post not in found(app, db, "送信")


def test_a_narrower_word_finds_the_broad_ones_but_not_the_reverse(app, db):
    label, sticker = add_case(db, "ラベル"), add_case(db, "宛名シール")
    assert found(app, db, "宛名シール") >= {label, sticker}
    assert sticker not in found(app, db, "ラベル")


def test_every_change_is_audited_versioned_and_compare_and_set(db, reviewer):
    group_id = vocabulary.create_group(db, reviewer, Draft(["ゾウガメ", "リクガメ"], [], "試し"))
    assert vocabulary.current_version(db) == 2
    vocabulary.update_group(db, reviewer, group_id, Draft(["ゾウガメ", "カメ"], []), 1)
    with pytest.raises(Conflict):  # a form opened at version 1 is stale now
        vocabulary.update_group(db, reviewer, group_id, Draft(["ゾウガメ", "ウミガメ"], []), 1)
    with pytest.raises(Conflict):
        vocabulary.delete_group(db, reviewer, group_id, 1)
    vocabulary.delete_group(db, reviewer, group_id, 2)
    with pytest.raises(NotFound):
        vocabulary.get_group(db, reviewer, group_id)
    entries = db.execute_returning_dicts(
        "SELECT actor, action, detail FROM audit_log WHERE action LIKE 'vocabulary_%' ORDER BY audit_id")
    assert [(e["actor"], e["action"]) for e in entries] == [
        ("cli", "vocabulary_seed"), ("rev", "vocabulary_create"), ("rev", "vocabulary_update"),
        ("rev", "vocabulary_delete")]
    update = json.loads(entries[2]["detail"])
    assert update["before"]["words"] == ["ゾウガメ", "リクガメ"] and update["before"]["note"] == "試し"
    assert update["after"]["words"] == ["ゾウガメ", "カメ"] and update["version"] == 3
    assert [c["action"] for c in vocabulary.history(db, reviewer)] == ["delete", "update", "create", "seed"]


@pytest.mark.parametrize("roles", [("staff",), ("manager",), ("trainer",), ("admin",)])
def test_only_reviewers_may_change_or_list_the_vocabulary(db, make_user, roles):
    actor = make_user("-".join(roles) + "-x", *roles)
    with pytest.raises(Forbidden):
        vocabulary.create_group(db, actor, Draft(["ゾウガメ", "リクガメ"], []))
    with pytest.raises(Forbidden):
        vocabulary.list_groups(db, actor)


def test_a_change_is_used_by_the_next_search_without_a_restart(app, db, reviewer):
    tortoise = add_case(db, "リクガメ")
    assert tortoise not in found(app, db, "ゾウガメ")  # and now cached for this vocabulary
    vocabulary.create_group(db, reviewer, Draft(["ゾウガメ", "リクガメ"], []))
    assert tortoise in found(app, db, "ゾウガメ")
    assert tortoise not in found(app, db, "ゾウガメ", exact=True)


def test_a_vocabulary_word_is_cut_out_of_a_query_but_never_out_of_a_word(app, db):
    lost = add_case(db, "書類を紛失")
    assert lost in found(app, db, "書類をなくした")  # なくした inside the query run
    chars = analysis.normalize
    words = vocabulary.current(db)
    assert [m[2].folded for m in words.find(chars("誤交付"))] == ["誤交付"]  # not 誤 alone
    assert words.find(chars("マイナス")) == []  # not マイナ inside a katakana word
    assert [m[2].folded for m in words.find(chars("鍵をかけ忘れた"))] == ["鍵", "かけ忘れ"]


def test_another_form_of_a_vocabulary_verb_finds_what_the_vocabulary_gives_for_it(app, db, reviewer):
    vocabulary.create_group(db, reviewer, Draft(["裁断", "刻んだ"], []))
    shredded = add_case(db, "保存文書を裁断")
    # Neither form is in the vocabulary as typed: the stem (刻) is what they share.
    assert shredded in found(app, db, "刻んでしまった")
    assert shredded in found(app, db, "書類を刻む")
    assert shredded not in found(app, db, "刻んでしまった", exact=True)


@pytest.mark.parametrize("query, text", [
    ("委託先に", "委託先の紛失"),  # a particle typed onto a noun is not required
    ("捨ててしまった", "書類を捨てる前に"),  # an inflected verb is searched by its kanji stem
    ("頼んだ業者が", "委託業者が紛失"),  # a phrase typed as one word is cut into its words
    ("黒く", "黒塗りの不備"),  # an adjective's ending is not required either
])
def test_particles_and_verb_endings_typed_onto_a_word_are_not_required(app, db, query, text):
    case = add_case(db, text)
    assert case in found(app, db, query, exact=True)


# --- init and the seed ------------------------------------------------------------------

def test_init_loads_the_seed_once_and_never_overwrites_reviewers_edits(app, db, reviewer):
    groups = vocabulary.list_groups(db, reviewer)
    assert len(groups) == len(SEED_GROUPS)
    vocabulary.delete_group(db, reviewer, groups[0]["group_id"], groups[0]["version"])
    result = app.test_cli_runner().invoke(args=["init"])
    assert result.exit_code == 0 and "search vocabulary: kept as it is" in result.output
    assert len(vocabulary.list_groups(db, reviewer)) == len(SEED_GROUPS) - 1


def _by_words(db, reviewer, word):
    return [g for g in vocabulary.list_groups(db, reviewer)
            if word in g["words"] + g["narrower"]]


def test_seed_groups_a_vocabulary_lacks_are_offered_and_added_when_chosen(app, db, reviewer):
    """An installation set up before the seed grew: a whole group and one word are missing."""
    groups = vocabulary.list_groups(db, reviewer)
    assert vocabulary.seed_proposals(db, reviewer, SEED) == []
    train = next(g for g in groups if "新幹線" in g["words"])
    vocabulary.delete_group(db, reviewer, train["group_id"], train["version"])
    namesake = next(g for g in groups if "同姓" in g["words"])
    vocabulary.update_group(db, reviewer, namesake["group_id"], Draft(
        [w for w in namesake["words"] if w != "同姓"], namesake["narrower"], namesake["note"]),
        namesake["version"])
    proposals = vocabulary.seed_proposals(db, reviewer, SEED)
    assert [(p.group is None, p.missing) for p in proposals] == [
        (False, [("同姓", False)]), (True, [("電車", False), ("列車", False), ("新幹線", False)])]
    assert app.test_cli_runner().invoke(args=["init"]).output.count("2 seed groups or words") == 1

    version = vocabulary.current_version(db)
    vocabulary.add_from_seed(db, reviewer, SEED, [proposals[0].key], version)
    assert "同姓" in _by_words(db, reviewer, "同姓同名")[0]["words"]
    assert _by_words(db, reviewer, "新幹線") == []  # not chosen: nothing added
    change = vocabulary.history(db, reviewer, limit=1)[0]
    assert change["action"] == "update" and change["after"]["source"] == "seed"
    assert "同姓" in change["after"]["words"] and "同姓" not in change["before"]["words"]
    assert [p.missing for p in vocabulary.seed_proposals(db, reviewer, SEED)] == [
        [("電車", False), ("列車", False), ("新幹線", False)]]


def test_a_deleted_seed_group_comes_back_whole_not_into_a_group_sharing_two_of_its_words(
        db, reviewer):
    """The seed's 宛名 and ラベル groups share 宛名シール・宛名ラベル: with 宛名 deleted, the
    ラベル group is still the ラベル seed group's, so 宛名 must not join it (ラベル would
    then find every 宛名 case)."""
    address = next(g for g in _by_words(db, reviewer, "宛名") if "宛名" in g["words"])
    vocabulary.delete_group(db, reviewer, address["group_id"], address["version"])
    [proposal] = vocabulary.seed_proposals(db, reviewer, SEED)
    assert proposal.group is None and "宛名" in proposal.draft.words
    vocabulary.add_from_seed(db, reviewer, SEED, [proposal.key], vocabulary.current_version(db))
    assert vocabulary.seed_proposals(db, reviewer, SEED) == []
    assert "宛名" not in next(g for g in _by_words(db, reviewer, "ラベル"))["words"]


def test_an_office_group_sharing_as_many_words_with_two_seed_groups_is_extended_by_neither(
        db, reviewer):
    label = next(g for g in _by_words(db, reviewer, "ラベル") if "ラベル" in g["words"])
    vocabulary.delete_group(db, reviewer, label["group_id"], label["version"])
    address = next(g for g in _by_words(db, reviewer, "宛名") if "宛名" in g["words"])
    vocabulary.update_group(db, reviewer, address["group_id"], Draft(
        ["あて名"], ["宛名シール", "宛名ラベル"], ""), address["version"])
    proposals = vocabulary.seed_proposals(db, reviewer, SEED)
    assert proposals and all(p.group is None for p in proposals)  # neither joins あて名


def test_seed_groups_sharing_words_are_each_restored_to_their_own_group(db, reviewer):
    dropped = _by_words(db, reviewer, "落とした")[0]
    vocabulary.delete_group(db, reviewer, dropped["group_id"], dropped["version"])
    lost = _by_words(db, reviewer, "所在不明")[0]
    vocabulary.update_group(db, reviewer, lost["group_id"], Draft(
        [w for w in lost["words"] if w != "所在不明"], lost["narrower"], lost["note"]), lost["version"])
    proposals = vocabulary.seed_proposals(db, reviewer, SEED)
    assert sorted((p.group is None, [w for w, _ in p.missing]) for p in proposals) == [
        (False, ["所在不明"]), (True, ["紛失", "遺失", "落とした", "落とす"])]
    vocabulary.add_from_seed(db, reviewer, SEED, [p.key for p in proposals],
                             vocabulary.current_version(db))
    assert "所在不明" in _by_words(db, reviewer, "所在不明")[0]["words"]
    assert _by_words(db, reviewer, "落とした") and vocabulary.seed_proposals(db, reviewer, SEED) == []


def test_a_seed_group_that_contradicts_the_office_is_shown_with_why_and_never_offered(
        client, signed_in, app):
    reviewer = signed_in("reviewer")
    train = in_db(app, _by_words, reviewer, "新幹線")[0]
    in_db(app, vocabulary.delete_group, reviewer, train["group_id"], train["version"])
    in_db(app, vocabulary.create_group, reviewer, Draft(["鉄道"], ["新幹線"]))
    [proposal] = in_db(app, vocabulary.seed_proposals, reviewer, SEED)
    assert "向きが食い違います" in proposal.problem[0]
    assert in_db(app, vocabulary.count_seed_proposals, SEED) == 0
    assert "seed-notice" not in client.get("/admin/vocabulary").get_data(as_text=True)
    page = client.get("/admin/vocabulary/seed").get_data(as_text=True)
    assert "このままでは取り込めません" in page and 'name="key"' not in page
    assert "取り込めるもの 0件・いまの言い換えと合わないもの 1件" in page
    assert "いまは取り込めるものがありません" in page and ">取り込む</button>" not in page


def test_a_key_that_is_no_longer_proposed_writes_nothing(db, reviewer):
    train = _by_words(db, reviewer, "新幹線")[0]
    vocabulary.delete_group(db, reviewer, train["group_id"], train["version"])
    [proposal] = vocabulary.seed_proposals(db, reviewer, SEED)
    version = vocabulary.current_version(db)
    errors = errors_of(lambda: vocabulary.add_from_seed(
        db, reviewer, SEED, [proposal.key, "0123456789abcdef"], version))
    assert errors == {"seed": [vocabulary.SEED_CHANGED]}
    assert _by_words(db, reviewer, "新幹線") == [] and vocabulary.current_version(db) == version


def test_a_fresh_install_without_a_readable_seed_vocabulary_still_initialises(tmp_path):
    seed = tmp_path / "seed"
    shutil.copytree(SEED.parent, seed)
    (seed / "vocabulary.csv").unlink()
    app = make_app(tmp_path / "data", SEED_DIR=str(seed))
    result = app.test_cli_runner().invoke(args=["init"])
    assert result.exit_code == 0, result.output
    assert "warning: 標準の言い換えのファイル（vocabulary.csv）を読めません" in result.output
    assert "search vocabulary: empty (the seed list could not be read)" in result.output
    with app.app_context():
        assert vocabulary.current_version(get_db()) == 0 and vocabulary._groups(get_db()) == []


def test_a_missing_or_broken_seed_file_leaves_the_list_and_init_working(client, signed_in, app,
                                                                      tmp_path):
    reviewer = signed_in("reviewer")
    for content in (None, "語,狭い語\nひとつだけ,\n".encode()):
        folder = tmp_path / ("missing" if content is None else "broken")
        shutil.copytree(SEED.parent, folder)
        (folder / "vocabulary.csv").unlink()
        if content is not None:
            (folder / "vocabulary.csv").write_bytes(content)
        app.config["SEED_DIR"] = str(folder)
        result = app.test_cli_runner().invoke(args=["init"])
        assert result.exit_code == 0 and "search vocabulary: kept as it is" in result.output
        assert "warning: 標準の言い換えのファイル（vocabulary.csv）" in result.output
        listing = client.get("/admin/vocabulary")
        assert listing.status_code == 200 and "seed-notice" not in listing.get_data(as_text=True)
        page = client.get("/admin/vocabulary/seed").get_data(as_text=True)
        assert "標準の言い換えのファイル（vocabulary.csv）" in page
        assert "すべていまの言い換えに入っています" not in page
        with pytest.raises(Invalid):
            in_db(app, vocabulary.seed_proposals, reviewer, folder / "vocabulary.csv")


def test_adding_from_the_seed_is_refused_whole_when_stale_or_conflicting(db, reviewer):
    groups = vocabulary.list_groups(db, reviewer)
    train = next(g for g in groups if "新幹線" in g["words"])
    vocabulary.delete_group(db, reviewer, train["group_id"], train["version"])
    label = next(g for g in groups if "ラベル" in g["words"])
    vocabulary.delete_group(db, reviewer, label["group_id"], label["version"])
    keys = [p.key for p in vocabulary.seed_proposals(db, reviewer, SEED)]
    assert len(keys) == 2
    with pytest.raises(Conflict):
        vocabulary.add_from_seed(db, reviewer, SEED, keys, vocabulary.current_version(db) - 1)
    # A reviewer makes 新幹線 narrower in a group of their own: the seed's train group, where
    # it is broad, now contradicts it; the ラベル group, which would pass, is not added either.
    vocabulary.create_group(db, reviewer, Draft(["鉄道"], ["新幹線"]))
    version = vocabulary.current_version(db)
    errors = errors_of(lambda: vocabulary.add_from_seed(db, reviewer, SEED, keys, version))
    assert list(errors) == ["電車・列車・新幹線"] and "向きが食い違います" in errors["電車・列車・新幹線"][0]
    assert _by_words(db, reviewer, "ラベル") == [] and vocabulary.current_version(db) == version
    assert errors_of(lambda: vocabulary.add_from_seed(db, reviewer, SEED, [], version)) == {
        "seed": ["取り込む言い換えを1つ以上選んでください。"]}


# --- entry by entry: every seed group through the real index -----------------------------

def _finds(draft: Draft):
    """(typed, other, whether typed also finds other) for each ordered pair of a group."""
    members = draft.members()
    for typed, typed_narrower in members:
        for other, other_narrower in members:
            if other != typed:
                yield typed, other, typed_narrower or not other_narrower


@pytest.mark.parametrize("draft", SEED_GROUPS, ids=["・".join(d.words + d.narrower) for d in SEED_GROUPS])
def test_every_seed_group_finds_a_case_holding_only_another_member(app, db, draft, no_feedback):
    cases = {word: add_case(db, f"{word}。") for word, _ in draft.members()}
    for typed, other, finds in _finds(draft):
        with_vocabulary = cases[other] in found(app, db, typed)
        if finds:
            assert with_vocabulary, f"「{typed}」 does not find a case holding only 「{other}」"
        else:  # broad → narrower: the vocabulary adds nothing (bigrams may still match)
            assert with_vocabulary == (cases[other] in found(app, db, typed, exact=True)), \
                f"「{typed}」 (broad) finds 「{other}」 (narrower) through the vocabulary"


# --- the result page ---------------------------------------------------------------------

def test_the_result_page_says_what_was_added_and_links_to_the_typed_words_only(client, signed_in):
    signed_in("staff")
    html = client.get("/cases?q=書類をなくした&origin=external").get_data(as_text=True)
    assert "『なくした』は『紛失・なくなった・失くした・無くした・遺失・所在不明』も含めて検索しました。" in html
    exact_link = re.search(r'<a href="([^"]*exact=1[^"]*)">入力した言葉だけで検索する</a>', html)
    assert exact_link and "origin=external" in exact_link.group(1)
    assert "<mark>紛失</mark>" in html  # snippets highlight the added words too
    html = client.get(exact_link.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert "も含めて検索しました" not in html and "入力した言葉だけで検索しました" in html
    assert 'name="exact" value="1"' in html  # kept when the sort or the words change
    chip = re.search(r'<a class="chip" href="([^"]*)"', html)  # removes the origin filter
    assert chip and "exact=1" in chip.group(1) and "origin" not in chip.group(1)  # kept through filters


@pytest.mark.parametrize("query", ["！？", "の を", "AND OR", "・・・", "は"])
def test_a_query_of_only_stop_words_or_symbols_gets_the_empty_state(client, signed_in, query):
    signed_in("staff")
    response = client.get("/cases", query_string={"q": query})
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "0件の事例" in html and "条件に合う事例はありません。" in html
    assert "には検索に使える言葉がありません" in html
    assert "作業から探す" in html  # the empty state's suggestions


def state(app):
    with app.app_context():
        return [(g["words"], g["narrower"], g["note"]) for g in vocabulary._groups(get_db())]


def in_db(app, call, *args):
    """Run a core function on the app's database outside any request."""
    with app.app_context():
        return call(get_db(), *args)


def test_the_seed_page_adds_what_is_ticked_and_keeps_ticks_when_stale(client, signed_in, app):
    reviewer = signed_in("reviewer")
    words = lambda word: in_db(app, _by_words, reviewer, word)  # noqa: E731
    train = words("新幹線")[0]
    in_db(app, vocabulary.delete_group, reviewer, train["group_id"], train["version"])
    assert "いまの言い換えにないものが1件" in client.get("/admin/vocabulary").get_data(as_text=True)
    page = client.get("/admin/vocabulary/seed").get_data(as_text=True)
    assert re.search(r'<label for="seed-[0-9a-f]+">新しいグループ：電車・列車・新幹線</label>', page)
    key = re.search(r'name="key" value="([0-9a-f]+)" checked', page).group(1)
    version = re.search(r'name="version" value="(\d+)"', page).group(1)
    in_db(app, vocabulary.create_group, reviewer, Draft(["公用車", "庁用車"], []))  # meanwhile
    stale = client.post("/admin/vocabulary/seed", data={"csrf_token": csrf_token(page),
                                                       "version": version, "key": key})
    assert stale.status_code == 409 and "取り込みませんでした" in stale.get_data(as_text=True)
    assert f'value="{key}" checked' in stale.get_data(as_text=True)
    assert words("新幹線") == []
    none = post_form(client, "/admin/vocabulary/seed", {})  # nothing ticked
    assert none.status_code == 422 and "1つ以上選んで" in none.get_data(as_text=True)
    done = post_form(client, "/admin/vocabulary/seed", {"key": key})
    assert done.status_code == 302 and words("新幹線")
    assert "すべていまの言い換えに入っています" in client.get("/admin/vocabulary/seed").get_data(as_text=True)
    history = client.get("/admin/vocabulary/history").get_data(as_text=True)
    assert "追加（標準の言い換えから）" in history


def test_only_reviewers_see_or_add_the_seed_proposals(client, signed_in, app):
    signed_in("staff")
    assert client.get("/admin/vocabulary/seed").status_code == 403
    page = client.get("/").get_data(as_text=True)
    response = client.post("/admin/vocabulary/seed", data={"csrf_token": csrf_token(page), "key": "x"})
    assert response.status_code == 403
    with pytest.raises(Forbidden):
        in_db(app, vocabulary.seed_proposals, users.READER, SEED)


# --- the reviewer pages ----------------------------------------------------------------------

@pytest.mark.parametrize("roles", [("staff",), ("manager",), ("admin",), ("trainer",)])
def test_the_pages_are_for_reviewers_only(client, signed_in, roles):
    signed_in(*roles)
    for url in ("/admin/vocabulary", "/admin/vocabulary/new", "/admin/vocabulary/1/edit",
                "/admin/vocabulary/history", "/admin/vocabulary/download", "/admin/vocabulary/upload"):
        assert client.get(url).status_code == 403, url
    assert "言い換え</a>" not in client.get("/checklist").get_data(as_text=True)


def test_reviewer_lists_filters_adds_edits_and_deletes_a_group(client, signed_in, app):
    signed_in("reviewer")
    html = client.get("/admin/vocabulary").get_data(as_text=True)
    assert "言い換え</a>" in html and f"{len(SEED_GROUPS)}グループ" in html
    assert "紛失・なくした" in client.get("/admin/vocabulary?q=なくし").get_data(as_text=True)
    assert "「ゾウガメ」を含むグループはありません" in client.get("/admin/vocabulary?q=ゾウガメ").get_data(as_text=True)
    # The query log's link opens the form with the query as the first words.
    html = client.get("/admin/vocabulary/new?words=ゾウガメ").get_data(as_text=True)
    assert 'id="words" name="words" value="ゾウガメ"' in html and '<label for="words">' in html
    response = post_form(client, "/admin/vocabulary/new?words=ゾウガメ",
                         {"words": "ゾウガメ", "narrower": "", "note": ""})
    assert response.status_code == 422
    assert "語を2つ以上入れてください" in response.get_data(as_text=True)
    assert 'value="ゾウガメ"' in response.get_data(as_text=True)  # what was typed is kept
    response = post_form(client, "/admin/vocabulary/new", {"words": "ゾウガメ、リクガメ", "note": "試し"})
    assert response.status_code == 302
    group_id = in_db(app, lambda db: db.execute("SELECT max(group_id) FROM vocabulary_groups").fetchone()[0])
    response = post_form(client, f"/admin/vocabulary/{group_id}/edit", {"words": "ゾウガメ・カメ", "note": ""})
    assert response.status_code == 302
    assert "ゾウガメ・カメ" in client.get("/admin/vocabulary").get_data(as_text=True)
    assert "ゾウガメ" in client.get(f"/admin/vocabulary/{group_id}/delete").get_data(as_text=True)
    assert post_form(client, f"/admin/vocabulary/{group_id}/delete", {}).status_code == 302
    assert client.get(f"/admin/vocabulary/{group_id}/edit").status_code == 404
    history = client.get("/admin/vocabulary/history").get_data(as_text=True)
    assert "削除" in history and "編集" in history and "ゾウガメ・リクガメ" in history


def test_a_stale_edit_form_gets_409_and_keeps_what_was_typed(client, signed_in, app, reviewer):
    signed_in("reviewer")
    group_id = in_db(app, vocabulary.create_group, reviewer, Draft(["ゾウガメ", "リクガメ"], []))
    page = client.get(f"/admin/vocabulary/{group_id}/edit").get_data(as_text=True)
    in_db(app, vocabulary.update_group, reviewer, group_id, Draft(["ゾウガメ", "カメ"], []), 1)
    response = client.post(f"/admin/vocabulary/{group_id}/edit", data={
        "csrf_token": csrf_token(page), "version": "1", "words": "ゾウガメ、ウミガメ", "narrower": "", "note": ""})
    assert response.status_code == 409
    html = response.get_data(as_text=True)
    assert "別の人が変更しています" in html and 'value="ゾウガメ、ウミガメ"' in html
    assert in_db(app, vocabulary.get_group, reviewer, group_id)["words"] == ["ゾウガメ", "カメ"]


def test_forms_without_a_csrf_token_are_refused(client, signed_in):
    signed_in("reviewer")
    assert client.post("/admin/vocabulary/new", data={"words": "ゾウガメ、リクガメ"}).status_code == 400


# --- CSV ---------------------------------------------------------------------------------------

def upload(client, data: bytes, name="vocabulary.csv"):
    page = client.get("/admin/vocabulary/upload").get_data(as_text=True)
    return client.post("/admin/vocabulary/upload", data={
        "csrf_token": csrf_token(page), "file": (io.BytesIO(data), name)},
        content_type="multipart/form-data")


def apply(client, preview_html: str):
    fields = dict(re.findall(r'name="(token|filename|version|csrf_token)" value="([^"]*)"', preview_html))
    return client.post("/admin/vocabulary/upload/apply", data=fields)


def test_download_then_upload_changes_nothing(client, signed_in, app):
    signed_in("reviewer")
    data = client.get("/admin/vocabulary/download").data
    assert data.startswith(b"\xef\xbb\xbf") and b"\r\n" in data
    before, version = state(app), in_db(app, vocabulary.current_version)
    html = upload(client, data).get_data(as_text=True)
    assert f"変更なし {len(SEED_GROUPS)}件" in html and "変更はありません" in html
    assert state(app) == before and in_db(app, vocabulary.current_version) == version


@pytest.mark.parametrize("encoding", ["cp932", "utf-8-sig", "utf-8"])
def test_a_download_saved_again_by_excel_changes_nothing(client, signed_in, app, encoding):
    # Excel on Windows saves "CSV" as CP932 without a BOM and "CSV UTF-8" with one, and
    # writes its own line endings; the seed's words (表計算, 置いたまま, 電車・列車・新幹線 …)
    # must all survive that.
    signed_in("reviewer")
    text = client.get("/admin/vocabulary/download").data.decode("utf-8-sig")
    assert "電車、列車、新幹線" in text and "置いたまま" in text and "表計算" in text
    resaved = "\r\n".join(text.splitlines()).encode(encoding)
    before, version = state(app), in_db(app, vocabulary.current_version)
    html = upload(client, resaved).get_data(as_text=True)
    assert f"変更なし {len(SEED_GROUPS)}件" in html and "変更はありません" in html
    assert state(app) == before and in_db(app, vocabulary.current_version) == version


def test_a_cp932_upload_is_previewed_then_applied_in_one_go(client, signed_in, app):
    signed_in("reviewer")
    text = "語,狭い語,メモ\r\n紛失、なくした、なくなった、失くした、無くした、遺失、所在不明,,動詞の言い換え\r\n" \
           "ゾウガメ・リクガメ,,試し\r\n"
    html = upload(client, text.encode("cp932")).get_data(as_text=True)
    assert "追加 1件・変更 0件" in html and f"削除 {len(SEED_GROUPS) - 1}件" in html
    assert len(state(app)) == len(SEED_GROUPS)  # a preview writes nothing
    response = apply(client, html)
    assert response.status_code == 302
    assert state(app) == [(["紛失", "なくした", "なくなった", "失くした", "無くした", "遺失", "所在不明"], [],
                           "動詞の言い換え"),
                         (["ゾウガメ", "リクガメ"], [], "試し")]


def test_an_upload_preview_made_stale_by_an_edit_is_refused(client, signed_in, app, reviewer):
    signed_in("reviewer")
    html = upload(client, "語\nゾウガメ、リクガメ\n".encode()).get_data(as_text=True)
    in_db(app, vocabulary.create_group, reviewer, Draft(["ウミガメ", "カメ"], []))
    response = apply(client, html)
    assert response.status_code == 409 and "反映しませんでした" in response.get_data(as_text=True)
    assert len(state(app)) == len(SEED_GROUPS) + 1


def test_a_malformed_upload_changes_nothing_and_lists_each_bad_line(client, signed_in, app):
    signed_in("reviewer")
    before = state(app)
    text = ("語,狭い語,メモ\n"
            "ゾウガメ、リクガメ,,\n"          # 2: fine
            "ひとつだけ,,\n"                   # 3: one word
            "紛失、、なくした,,\n"             # 4: empty word
            f"{'長' * 31}、短い,,\n"           # 5: over 30 characters
            "ＦＡＸ、ファクス,,\n"             # 6: the same word twice (folded)
            "カメ,ゾウガメ,\n")                 # 7: ゾウガメ broad on line 2, narrower here
    response = upload(client, text.encode())
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    for line in ("3行目", "4行目", "5行目", "6行目", "7行目"):
        assert f"<strong>{line}</strong>" in html, line
    assert "<strong>2行目</strong>" not in html and "何も変更していません" in html
    assert "7行目</strong>：「ゾウガメ」は2行目では広い語です" in html
    assert state(app) == before
    assert upload(client, b"\x00\x01binary").status_code == 422
    assert upload(client, "メモ\nあ\n".encode()).status_code == 422  # no 語 column
    assert state(app) == before


def test_formula_cells_are_neutralised_in_the_download_and_read_back_unchanged(client, signed_in, app, reviewer):
    signed_in("reviewer")
    in_db(app, vocabulary.create_group, reviewer, Draft(["=HYPERLINK(x)", "+ゾウガメ"], [], "@SUM(1)"))
    data = client.get("/admin/vocabulary/download").data
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert ["'=HYPERLINK(x)、+ゾウガメ", "", "'@SUM(1)"] in rows
    before = state(app)
    html = upload(client, data).get_data(as_text=True)
    assert "変更はありません" in html
    assert state(app) == before
