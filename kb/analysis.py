"""Japanese text analysis for the search index: normalise, fold, and cut into bigrams.

Whoosh pickles the analyzer into the index by its import path, so this module and the
name ``JapaneseTokenizer`` must never move. A change to what the tokenizer produces
(the folding table included) must bump ``ANALYSIS_VERSION``: the index is then rebuilt.

What a text goes through, identically for documents and queries (see SEARCH.md):
1. NFKC per character (ＦＡＸ → FAX, ﾌｧｸｽ → ファクス, half-width voiced marks joined)
   and lower case, keeping for every character the span of the original text it came from;
2. 「・」 between katakana dropped;
3. the folding table, longest match first (ファクス → fax, 電子メール → メール …);
4. a trailing 「ー」 dropped from katakana words of three or more letters (メモリー → メモリ);
5. tokens: ASCII words whole (so ``cc`` does not match inside ``bcc``), runs of kana and
   kanji as overlapping bigrams, a lone kana/kanji as itself. Each token carries the
   span of the original text, so highlights mark what the writer typed.
"""

import re
import unicodedata

from whoosh.analysis import Token, Tokenizer

ANALYSIS_VERSION = 1

# (variants, canonical form). Every variant of a group folds to the canonical form, in
# documents and in queries alike. ASCII variants match whole words only.
FOLDING_GROUPS = (
    (("ファクシミリ", "ファックス", "ファクス", "fax"), "fax"),
    (("電子メール", "eメール", "e-mail", "email", "イーメール", "メール"), "メール"),
    (("usbメモリ", "usbメモリー", "usbフラッシュメモリ", "電磁的記録媒体", "記録媒体", "usb"), "usb"),
    (("漏洩", "ろうえい", "漏えい"), "漏えい"),
    (("個人番号", "マイナンバー"), "マイナンバー"),
    (("取り扱い", "取扱い", "取り扱", "取扱"), "取扱"),
    (("ウェブサイト", "ウェブページ", "webサイト", "webページ", "ホームページ", "hp", "web"), "ホームページ"),
    (("二重チェック", "ダブルチェック"), "ダブルチェック"),
    (("送付先", "送り先", "送信先", "あて先", "宛て先", "宛先"), "宛先"),
    (("問い合わせ", "問合わせ", "問合せ"), "問合せ"),
    (("申し込み", "申込み", "申込"), "申込"),
    (("持ち出し", "持出し", "持ち出", "持出"), "持出"),
    (("引き渡し", "引渡し", "引渡"), "引渡"),
    (("取り違え", "取違え", "取り違", "取違"), "取違"),
    (("差し押さえ", "差押え", "差押"), "差押"),
    # Every way of saying "by mistake" becomes 誤, which a one-character query segment
    # finds at the start of any bigram (誤送, 誤交, 誤っ …).
    (("間違って", "まちがって", "間違い", "間違え", "まちがい", "誤り", "誤って"), "誤"),
    # Okurigana written or left out: 差し込み印刷 = 差込印刷, 入れ違い = 入違い …
    (("差し込み", "差込み", "差し込", "差込"), "差込"),
    (("置き忘れ", "置忘れ", "置き忘", "置忘"), "置忘"),
    (("入れ違い", "入れ違え", "入違い", "入違え", "入れ違", "入違"), "入違"),
    (("見落とし", "見落し", "見落と", "見落"), "見落"),
    (("引き継ぎ", "引継ぎ", "引き継", "引継"), "引継"),
    (("貸し出し", "貸出し", "貸し出", "貸出"), "貸出"),
    (("打ち合わせ", "打合わせ", "打ち合せ", "打合せ"), "打合せ"),
    (("読み上げ", "読上げ", "読み上", "読上"), "読上"),
    (("取り消し", "取消し", "取り消", "取消"), "取消"),
    (("受け付け", "受付け", "受け付", "受付"), "受付"),
    (("届け出", "届出"), "届出"),
    (("振り込み", "振込み", "振り込", "振込"), "振込"),
    (("書き込み", "書込み", "書き込", "書込"), "書込"),
    (("切り替え", "切替え", "切り替", "切替"), "切替"),
    (("スマートフォン", "スマホ"), "スマートフォン"),
    (("パソコン", "pc"), "パソコン"),
    (("シュレッダー", "シュレッダ"), "シュレッダ"),
)

_ASCII_WORD = re.compile(r"[a-z0-9]")


def _is_katakana(char: str) -> bool:
    return "\u30a1" <= char <= "\u30fa" or char == "ー"


def _is_cjk(char: str) -> bool:
    """Kana or kanji: the characters that are cut into bigrams."""
    return ("\u3041" <= char <= "\u3096" or "\u30a1" <= char <= "\u30fa" or char in "ー々〆ヶ"
            or "\u4e00" <= char <= "\u9fff" or "\u3400" <= char <= "\u4dbf")


def _is_word(char: str) -> bool:
    return char.isascii() and char.isalnum()


def _build_folds() -> list[tuple[str, str]]:
    folds = []
    for variants, canonical in FOLDING_GROUPS:
        for variant in variants:
            folds.append((unicodedata.normalize("NFKC", variant).lower(), canonical))
    # Longest first, so 電子メール wins over メール and usbメモリ over usb.
    return sorted(folds, key=lambda pair: len(pair[0]), reverse=True)


FOLDS = _build_folds()
_FOLDS_BY_FIRST: dict[str, list[tuple[str, str]]] = {}
for _variant, _canonical in FOLDS:
    _FOLDS_BY_FIRST.setdefault(_variant[0], []).append((_variant, _canonical))


_NFKC: dict[str, str] = {}


def _nfkc(char: str) -> str:
    normal = _NFKC.get(char)
    if normal is None:
        normal = _NFKC[char] = unicodedata.normalize("NFKC", char).lower()
    return normal


def normalize(text: str) -> list[tuple[str, int, int]]:
    """The folded text as (character, original start, original end) triples."""
    chars: list[tuple[str, int, int]] = []
    for index, char in enumerate(text):
        normal = _nfkc(char)
        if not normal:
            continue
        if normal in ("\u3099", "\u309a", " \u3099", " \u309a") and chars:
            # A half-width voiced mark joins the kana before it (ﾌﾞ → ブ).
            previous, start, _ = chars[-1]
            chars[-1] = (unicodedata.normalize("NFC", previous + normal.strip()), start, index + 1)
            continue
        for piece in normal:
            chars.append((piece, index, index + 1))
    chars = [c for i, c in enumerate(chars)
             if not (c[0] == "・" and 0 < i < len(chars) - 1
                     and _is_katakana(chars[i - 1][0]) and _is_katakana(chars[i + 1][0]))]
    return _drop_long_vowels(_fold(chars))


def _fold(chars):
    out, i, n = [], 0, len(chars)
    while i < n:
        for variant, canonical in _FOLDS_BY_FIRST.get(chars[i][0], ()):
            length = len(variant)
            if i + length > n or "".join(c[0] for c in chars[i:i + length]) != variant:
                continue
            if variant[0].isascii() and variant[-1].isascii() and (
                    (i > 0 and _is_word(chars[i - 1][0]))
                    or (i + length < n and _is_word(chars[i + length][0]))):
                continue  # an ASCII variant matches whole words only
            start, end = chars[i][1], chars[i + length - 1][2]
            out.extend((char, start, end) for char in canonical)
            i += length
            break
        else:
            out.append(chars[i])
            i += 1
    return out


def _drop_long_vowels(chars):
    out = []
    for i, (char, start, end) in enumerate(chars):
        if char == "ー" and (i + 1 == len(chars) or not _is_katakana(chars[i + 1][0])):
            run = 0
            j = len(out) - 1
            while j >= 0 and _is_katakana(out[j][0]):
                run += 1
                j -= 1
            if run >= 3:
                out[-1] = (out[-1][0], out[-1][1], end)
                continue
        out.append((char, start, end))
    return out


def runs(text: str) -> list[tuple[str, list[tuple[str, int, int]]]]:
    """The folded text cut into runs: ("word", chars) for ASCII words, ("cjk", chars) for
    kana/kanji. Everything else (spaces, punctuation, symbols) separates runs."""
    return runs_of(normalize(text))


def runs_of(chars: list[tuple[str, int, int]]) -> list[tuple[str, list[tuple[str, int, int]]]]:
    """``runs`` of characters already normalised (a stretch of ``normalize``'s output)."""
    result, current, kind = [], [], None
    for triple in chars:
        char = triple[0]
        this = "word" if _is_word(char) else "cjk" if _is_cjk(char) else None
        if this != kind and current:
            result.append((kind, current))
            current = []
        kind = this
        if this is not None:
            current.append(triple)
    if current and kind is not None:
        result.append((kind, current))
    return result


def run_tokens(kind: str, chars) -> list[tuple[str, int, int]]:
    """(text, original start, original end) of the tokens of one run."""
    if kind == "word" or len(chars) == 1:
        return [("".join(c[0] for c in chars), chars[0][1], chars[-1][2])]
    return [(chars[i][0] + chars[i + 1][0], chars[i][1], chars[i + 1][2])
            for i in range(len(chars) - 1)]


def tokens(text: str) -> list[tuple[str, int, int]]:
    """Every token of ``text`` in order, with its span in the original text."""
    return [token for kind, chars in runs(text) for token in run_tokens(kind, chars)]


PARTICLES = set("にをがでとへはのも")


def _script(char: str) -> str:
    if _is_katakana(char):
        return "katakana"
    if "\u3041" <= char <= "\u3096":
        return "hiragana"
    return "kanji"


def _parts(chars):
    """A kana/kanji run cut where a query most likely joins two words: between kanji and
    katakana (添付ファイル → 添付 / ファイル) and at a particle between kanji
    (別人に交付 → 別人 / 交付)."""
    parts, current = [], []
    for i, triple in enumerate(chars):
        char = triple[0]
        if current:
            before, script = _script(current[-1][0]), _script(char)
            if {before, script} == {"kanji", "katakana"}:
                parts.append(current)
                current = []
            elif (char in PARTICLES and before == "kanji" and i + 1 < len(chars)
                  and _script(chars[i + 1][0]) == "kanji"):
                parts.append(current)
                current = []
                continue
        current.append(triple)
    if current:
        parts.append(current)
    return parts


def query_runs(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """A query as runs (cut at spaces and between ASCII and kana/kanji): for each, the
    tokens of the whole run and the tokens of each of its parts (see ``_parts``)."""
    result = []
    for kind, chars in runs(text):
        pieces = [chars] if kind == "word" else _parts(chars)
        whole = [token for token, _, _ in run_tokens(kind, chars)]
        result.append((whole, [[token for token, _, _ in run_tokens(kind, piece)]
                               for piece in pieces]))
    return result


class JapaneseTokenizer(Tokenizer):
    """Whoosh tokenizer producing the tokens above (positions and character offsets)."""

    def __eq__(self, other):
        return other is not None and self.__class__ is other.__class__

    def __call__(self, value, positions=False, chars=False, keeporiginal=False,
                 removestops=True, start_pos=0, start_char=0, tokenize=True, mode="",
                 **kwargs):
        token = Token(positions, chars, removestops=removestops, mode=mode, **kwargs)
        if not tokenize:
            token.original = token.text = value
            token.boost = 1.0
            if positions:
                token.pos = start_pos
            if chars:
                token.startchar = start_char
                token.endchar = start_char + len(value)
            yield token
            return
        for pos, (text, start, end) in enumerate(tokens(value)):
            token.text = text
            token.boost = 1.0
            token.stopped = False
            if keeporiginal:
                token.original = value[start:end]
            if positions:
                token.pos = start_pos + pos
            if chars:
                token.startchar = start_char + start
                token.endchar = start_char + end
            yield token


def JapaneseAnalyzer():
    """The analyzer of every text field of the index."""
    return JapaneseTokenizer()
