"""The Japanese analyzer: every folding entry, normalisation, bigrams and offsets."""

import pytest

from kb import analysis


def texts(text):
    return [token for token, _, _ in analysis.tokens(text)]


@pytest.mark.parametrize("variants, canonical", analysis.FOLDING_GROUPS,
                         ids=[canonical for _, canonical in analysis.FOLDING_GROUPS])
def test_every_variant_of_a_folding_entry_gives_the_same_tokens(variants, canonical):
    expected = texts(canonical)
    for variant in variants:
        assert texts(variant) == expected, variant
        # …also in full-width and upper case, and inside a sentence.
        assert texts(variant.upper()) == expected, variant
        assert texts(f"、{variant}。") == expected, variant


@pytest.mark.parametrize("a, b", [
    ("ＦＡＸ", "FAX"), ("ﾌｧｸｽ", "ファクス"), ("ＵＳＢメモリ", "USB"), ("ﾃﾞｰﾀ", "データ"),
    ("メモリー", "メモリ"), ("サーバー", "サーバ"), ("ケア・マネジャー", "ケアマネジャー"),
    ("ろうえい", "漏洩"), ("個人番号", "マイナンバー"), ("取り扱い", "取扱"),
    ("Eメール", "電子メール"), ("HP", "ホームページ"), ("送り先", "宛先"),
])
def test_spelling_variants_fold_together(a, b):
    assert texts(a) == texts(b)


def test_kana_and_kanji_become_overlapping_bigrams():
    assert texts("封入誤り") == ["封入", "入誤"]
    assert texts("紛失") == ["紛失"]
    assert texts("紙") == ["紙"]


def test_ascii_words_stay_whole():
    assert texts("BCCとCC") == ["bcc", "と", "cc"]
    assert "cc" not in texts("BCCで送信")


def test_offsets_point_into_the_original_spelling():
    text = "ＦＡＸで誤送信"
    spans = {token: text[start:end] for token, start, end in analysis.tokens(text)}
    assert spans["fax"] == "ＦＡＸ"
    assert spans["送信"] == "送信"
    text = "ﾌｧｸｽの送り先"
    spans = {token: text[start:end] for token, start, end in analysis.tokens(text)}
    assert spans["fax"] == "ﾌｧｸｽ"


def test_ascii_variants_match_whole_words_only():
    assert texts("hp") == texts("ホームページ")
    assert texts("https") == ["https"]


def test_query_runs_cut_compounds_where_words_join():
    assert analysis.query_runs("添付ファイル")[0][1] == [["添付"], ["ファ", "ァイ", "イル"]]
    assert analysis.query_runs("別人に交付")[0][1] == [["別人"], ["交付"]]
    assert [whole for whole, _ in analysis.query_runs("FAX誤送信")] == [["fax"], ["誤送", "送信"]]


def test_tokenizer_is_comparable_for_whoosh_schemas():
    assert analysis.JapaneseAnalyzer() == analysis.JapaneseAnalyzer()
