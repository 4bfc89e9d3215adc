"""How a query is understood and how cases are ranked for it.

``plan_query`` turns what a member of staff typed into a plan: the words (cut at spaces,
script changes and where compounds join, folded like documents), their weights, the
incident types they name, "quoted phrases" and -exclusions. ``score_segment`` applies a
plan to one index segment as numpy arrays, one value per document: it never touches
Whoosh, it asks a ``view`` (kb.search) for the documents holding a term.

The score of a case is the sum, over the query words it holds, of the word's weight
(an IDF: rare words count more; words every case here is about count little) times the
weight of the best field it is in (the title counts most). A case holding every word
gets a bonus, so full matches come first while partial matches still appear; a word
that names an incident type (「FAX」「BCC」「誤交付」) lifts cases of that type even when
their text says it another way. Ties go to the newer case.

A word is found in a field when the field holds all of the word's bigrams. That is a
little looser than a phrase (the order is not checked) and much cheaper; a "quoted
phrase" is required in one field the same way.

The office's vocabulary (kb/vocabulary.py) is applied here, at search time: a query word
that is a vocabulary word (or a stretch of the query that is one: 「書類をなくした」 holds
「なくした」) is cut out as a word of its own, and also counts where a case holds one of
the words it finds, at ``VOCABULARY_WEIGHT`` of the smaller of the two words' weights —
the best of the typed word and its alternatives counts, never their sum.

Staff type verbs and phrases where the cases have nouns (「頼んだ業者が なくした」,
「電話で 教えてしまった」): a query word is cut where a phrase typed as one joins
(``_phrase_parts``), a particle after a noun is dropped, and an inflected verb or
adjective is searched by the kanji of its stem (``stem``: 捨てた → 捨, found at the start
of any bigram), and through what the vocabulary gives for any word with that stem.

Pseudo-relevance feedback (``feedback``, ``score_feedback``; kb.search runs it after the
first pass): the best cases of the first ranking lift the cases of an incident type most of
them share and the cases holding the distinctive bigrams they share, at a low weight, so a
case that says it in other words than the query's still comes up (docs/search.md).
"""

import functools
import math
from dataclasses import dataclass, field

import numpy as np
from markupsafe import Markup, escape

from kb import analysis

MAX_QUERY_LENGTH = 100
# How much a query word found in a field counts (times the word's weight). Countermeasures
# say what was done afterwards, not what happened: 0.7 (was 1.0; docs/search.md).
FIELD_WEIGHTS = {"title": 1.5, "body": 1.0, "measures": 0.7, "meta": 0.7}
# A case holding every (non-generic) query word gets this share of what those words
# scored in it again: what it found, not what was typed, so a word that a case holds only
# through the vocabulary (or a backoff) does not earn the typed word's full weight there
# (measured: 0.5 of the typed weights → 0.1 of the found scores, docs/search.md).
ALL_WORDS_BONUS = 0.1
# What a word naming an incident type adds to cases of that type (1.5 before issue #14;
# 2.5 measured best with the larger vocabulary and the smaller all-words bonus).
TYPE_HINT_WEIGHT = 2.5
BACKOFF = 0.5  # share of a compound's weight when only its parts are found
# Share of a word's weight where a case holds, instead of the typed word, a word the
# vocabulary gives for it: less than the typed word, so a case in the searcher's own words
# ranks first (0.8 measured against 0.6 and 1.0 with scripts/eval_search.py; README).
VOCABULARY_WEIGHT = 0.8
# Query words that say nothing on their own: a query of only these (or of symbols) finds
# nothing, with a notice, instead of every case.
STOP_WORDS = {"の", "を", "に", "が", "で", "と", "へ", "は", "も", "や", "か", "な", "た", "て",
              "です", "ます", "した", "する", "こと", "もの", "など", "ため", "について"}
# Particles trimmed off the query text next to a vocabulary word (「書類を|なくした」 → 書類).
CUT_PARTICLES = "にをがでとへはのもや"
# Kana words that only point or join (「ほかの人」「その書類」): never required query words.
FUNCTION_WORDS = {"ほかの", "ほか", "その", "この", "あの", "どの", "ある", "いる", "ない",
                  "しまった", "しまう", "ような", "よう", "とき", "から", "まで", "より", "だけ"}
# The last kana of an inflected verb or adjective after its stem (捨て|た, 教えてしまっ|た,
# 送っ|て, 似てい|る, 違|う, 溶か|す, 頼|む, 黒|く, 忘れ|ない): the stem is what the query means.
INFLECTED_ENDINGS = ("た", "だ", "て", "で", "る", "う", "く", "す", "つ", "む", "ぶ", "ぐ",
                     "ない", "ます", "ません")
# A single kana between two kanji that ends a word rather than sits inside a compound verb.
JOINING_KANA = set(CUT_PARTICLES) | set("うくるただな")
# Words every case of this knowledge base is about: they say little about which case is
# wanted, so they count for less and are not needed for the all-words bonus.
GENERIC_WORDS = {"漏えい", "個人情報", "情報", "事故", "事案", "事例", "再発防止", "対策", "流出",
                 "ヒヤリハット", "ヒヤリ", "職員", "市", "区"}
GENERIC_WEIGHT = 0.25

# A query word that names a kind of incident lifts cases of that type even when their
# text says it another way (「BCC」 finds 宛先欄に入力 cases filed as email_missend).
TYPE_HINTS = {
    "fax": ("fax_missend",), "誤送信": ("email_missend", "fax_missend"),
    "メール": ("email_missend",), "bcc": ("email_missend",), "cc": ("email_missend",),
    "一斉送信": ("email_missend",), "添付": ("email_missend",), "添付ファイル": ("email_missend",),
    "郵送": ("postal_misdelivery",), "誤送付": ("postal_misdelivery",),
    "誤封入": ("postal_misdelivery",), "封入": ("postal_misdelivery",),
    "誤配達": ("postal_misdelivery",), "発送": ("postal_misdelivery",),
    "宛名": ("postal_misdelivery",), "通知書": ("postal_misdelivery",),
    "誤交付": ("counter_misissue",), "交付": ("counter_misissue",), "窓口": ("counter_misissue",),
    "証明書": ("counter_misissue",),
    "紛失": ("document_loss", "media_loss"), "置き忘れ": ("document_loss", "media_loss"),
    "盗難": ("document_loss", "media_loss"), "usb": ("media_loss",),
    "施錠": ("document_loss", "media_loss"),
    "ホームページ": ("web_mispublish",), "誤掲載": ("web_mispublish",), "掲載": ("web_mispublish",),
    "委託": ("contractor",), "委託先": ("contractor",), "指定管理者": ("contractor",),
    "不正アクセス": ("cyber_attack",), "サイバー攻撃": ("cyber_attack",),
    "ウイルス": ("cyber_attack",), "マルウェア": ("cyber_attack",),
    "ランサムウェア": ("cyber_attack",), "廃棄": ("improper_disposal",),
    "シュレッダー": ("improper_disposal",), "溶解": ("improper_disposal",),
    "目的外": ("staff_misconduct",), "目的外利用": ("staff_misconduct",),
    "目的外閲覧": ("staff_misconduct",), "懲戒": ("staff_misconduct",),
    "懲戒処分": ("staff_misconduct",), "不正閲覧": ("staff_misconduct",),
    "電話": ("oral_disclosure",), "口頭": ("oral_disclosure",), "なりすまし": ("oral_disclosure",),
    "設定": ("system_misconfig",), "設定ミス": ("system_misconfig",),
}

# Pseudo-relevance feedback (``feedback``; kb.search runs it between two passes): the best
# FEEDBACK_DOCS cases of the first ranking say what the query is about. An incident type that
# at least FEEDBACK_TYPE_SHARE (and FEEDBACK_MIN_AGREEING) of them have lifts every case of
# that type by its share of FEEDBACK_TYPE_WEIGHT; the FEEDBACK_TERMS most distinctive bigrams
# that at least
# FEEDBACK_TERM_MIN_DOCS of them hold and the query does not lift the cases holding them at
# FEEDBACK_TERM_WEIGHT of (their share of those cases × their IDF). Measured in
# docs/search.md (steps 15–17): 5 cases, 0.6, 1.0, 10 bigrams, 2 cases, 0.1.
FEEDBACK_DOCS = 5
FEEDBACK_TYPE_SHARE = 0.6
FEEDBACK_TYPE_WEIGHT = 1.0
FEEDBACK_MIN_AGREEING = 2
FEEDBACK_TERMS = 10
FEEDBACK_TERM_MIN_DOCS = 2
FEEDBACK_TERM_WEIGHT = 0.1
# Bigrams are taken only from a first pass of at least this many cases: two cases share
# chance bigrams, and each one lifts a case into 「関連する事例」 (「電車」, 2 hits: 178 of
# 180 cases were listed as related). Types still count from two agreeing cases.
FEEDBACK_TERM_MIN_CASES = 3
# A bigram that more than this share of the published cases hold does not tell them apart
# (「保護」「会社」): never a feedback word. Neither changed the dev scores beyond noise
# (docs/search.md, step 26).
FEEDBACK_TERM_MAX_SHARE = 0.25

OPERATORS = {"AND", "OR", "NOT", "&&", "||"}
SYNTAX = str.maketrans({c: " " for c in "()[]{}:^~*?\\/+!"})


def word_of(tokens: list[str]) -> str:
    """The folded text of a word, from its overlapping bigrams."""
    return tokens[0] + "".join(token[-1] for token in tokens[1:]) if tokens else ""


def _folded(word: str) -> str:
    return word_of([token for token, _, _ in analysis.tokens(word)])


_TYPE_HINTS = {_folded(word): types for word, types in TYPE_HINTS.items()}
_GENERIC = {_folded(word) for word in GENERIC_WORDS}


def is_prefix(tokens: list[str]) -> bool:
    """A one-character kana/kanji word: found at the start of any bigram (誤 → 誤送, 誤っ)."""
    return len(tokens) == 1 and len(tokens[0]) == 1 and analysis._is_cjk(tokens[0])


@dataclass
class Word:
    tokens: list[str]
    weight: float
    generic: bool
    # Where the whole word is not found: (token lists that must all be found, weight).
    backoffs: list[tuple[list[list[str]], float]] = field(default_factory=list)
    # Words the vocabulary gives for this one (each a Word with its own lower weight).
    alternatives: list["Word"] = field(default_factory=list)


@dataclass
class Plan:
    words: list[Word] = field(default_factory=list)
    phrases: list[list[str]] = field(default_factory=list)
    excluded: list[list[str]] = field(default_factory=list)
    hinted_types: list[str] = field(default_factory=list)
    terms: frozenset = frozenset()
    notices: list[str] = field(default_factory=list)
    # (the words as typed, the words the vocabulary added for them): for the result page.
    expansions: list[tuple[str, list[str]]] = field(default_factory=list)
    # Something was typed, but nothing in it can be searched for (symbols, 「の」 …).
    unsearchable: bool = False

    @property
    def empty(self) -> bool:
        return not self.words and not self.phrases and not self.hinted_types

    @property
    def several_core_words(self) -> bool:
        """Whether the all-words bonus applies: two or more non-generic words."""
        return sum(1 for word in self.words if not word.generic) > 1


def plan_query(text: str, idf, vocabulary=None) -> Plan:
    """Understand a query. ``idf(tokens)`` gives the weight of a word in the index;
    ``vocabulary`` (a kb.vocabulary.Vocabulary, or None to search only the typed words)
    gives the other words each query word also finds.

    "quoted phrases" (when the quotes balance) must appear as written; -word excludes;
    AND/OR/NOT and Whoosh syntax typed by accident are plain text, never an error. A query
    of only symbols or stop words plans nothing and is flagged ``unsearchable``.
    """
    plan = Plan()
    text = (text or "").strip()
    if len(text) > MAX_QUERY_LENGTH:
        text = text[:MAX_QUERY_LENGTH]
        plan.notices.append(f"検索語が長すぎるため、先頭の{MAX_QUERY_LENGTH}文字で検索しました。")
    if text.count('"') % 2 == 0 and '"' in text:
        parts = text.split('"')
        plan.phrases = [_tokens(p) for p in parts[1::2] if _tokens(p)]
        text = " ".join(parts[0::2])
    plain = []
    for word in text.replace('"', " ").split():
        if word in OPERATORS:
            continue
        if word.startswith("-") and len(word) > 1:
            if _tokens(word[1:]):
                plan.excluded.append(_tokens(word[1:]))
        else:
            plain.append(word)
    names, terms = [], set()
    query = " ".join(plain).translate(SYNTAX)
    for whole, _ in analysis.query_runs(query):
        if word_of(whole) not in STOP_WORDS:
            names.append(word_of(whole))
            terms.update(whole)
    for tokens, typed, alternatives in _pieces(query, vocabulary):
        name = word_of(tokens)
        names.append(name)
        terms.update(tokens)
        generic = name in _GENERIC
        weight = idf(tokens) * (GENERIC_WEIGHT if generic else 1.0)
        word = Word(tokens, weight, generic, _backoffs(tokens, weight, idf))
        for other in alternatives:
            other_name = word_of(other)
            names.append(other_name)
            terms.update(other)
            other_weight = VOCABULARY_WEIGHT * min(
                weight, idf(other) * (GENERIC_WEIGHT if other_name in _GENERIC else 1.0))
            word.alternatives.append(Word(other, other_weight, generic,
                                          _backoffs(other, other_weight, idf)))
        plan.words.append(word)
        if typed is not None:
            plan.expansions.append(typed)
    terms.update(token for phrase in plan.phrases for token in phrase)
    plan.terms = frozenset(terms)
    plan.hinted_types = sorted({t for name in names for t in _TYPE_HINTS.get(name, ())})
    if text.strip() and not plan.words and not plan.phrases and not plan.excluded:
        plan.unsearchable = True
        plan.hinted_types = []
        plan.notices.append(f"「{text[:20]}」には検索に使える言葉がありません（記号や「の」「を」"
                            "だけでは探せません）。事例に出てきそうな言葉を入れてください。")
    return plan


def _pieces(query: str, vocabulary):
    """(tokens, (typed, [added words]) or None, [alternative token lists]) for each word of
    a query: vocabulary words cut out with what they also find, and the rest cut where
    compounds join (analysis._parts), stop words left out."""
    chars = analysis.normalize(query)
    found = vocabulary.find(chars) if vocabulary is not None and len(vocabulary) else []
    cursor = 0
    for start, end, entry in found + [(len(chars), len(chars), None)]:
        # Cut by a vocabulary word right there (no space between): see _plain_pieces.
        yield from _plain_pieces(
            query, chars[cursor:start], vocabulary,
            cut_before=0 < cursor < start and analysis._is_cjk(chars[cursor][0]),
            cut_after=entry is not None and cursor < start and analysis._is_cjk(chars[start - 1][0]))
        if entry is not None:
            tokens = [token for kind, run in analysis.runs_of(chars[start:end])
                      for token, _, _ in analysis.run_tokens(kind, run)]
            alternatives = [_tokens(written) for written, _ in entry.alternatives]
            typed = query[chars[start][1]:chars[end - 1][2]]
            yield tokens, (typed, [written for written, _ in entry.alternatives]), \
                [a for a in alternatives if a]
        cursor = end


def _plain_pieces(query, chars, vocabulary, *, cut_before: bool, cut_after: bool):
    runs = analysis.runs_of(chars)
    for number, (kind, run) in enumerate(runs):
        pieces = [run] if kind == "word" else analysis._parts(run)
        for index, piece in enumerate(pieces):
            # Next to a vocabulary word the query was cut by us, not by the searcher:
            # drop the particles and the lone kana that are left (「書類を」 → 書類, 「た」).
            first = number == 0 and index == 0
            last = number == len(runs) - 1 and index == len(pieces) - 1
            if kind == "cjk" and (first and cut_before or last and cut_after):
                if last and cut_after:
                    while piece and piece[-1][0] in CUT_PARTICLES:
                        piece = piece[:-1]
                if first and cut_before:
                    while piece and piece[0][0] in CUT_PARTICLES:
                        piece = piece[1:]
                if len(piece) <= 2 and all(_is_hiragana(c[0]) for c in piece):
                    continue
            if kind == "word":
                yield [token for token, _, _ in analysis.run_tokens(kind, piece)], None, []
                continue
            for part in _phrase_parts(piece):
                yield from _stemmed(query, part, vocabulary)


def _is_hiragana(char: str) -> bool:
    return "\u3041" <= char <= "\u3096"


def _phrase_parts(piece):
    """A kana/kanji piece cut where a phrase typed as one word joins two words: after a
    run of kana that ends an inflected word or is a particle, before a kanji or katakana
    (「中身が違う封筒」 → 中身 / 違う / 封筒, 「頼んだ業者が」 → 頼んだ / 業者が), and after a
    particle that follows a noun (「書類をなくした」 → 書類 / なくした; the particle is
    dropped). One kana of okurigana inside a compound verb is not such a joint (貼り出し,
    書き込み stay whole)."""
    parts, current, kana = [], [], 0
    for triple in piece:
        char = triple[0]
        if _is_hiragana(char):
            if kana == 0 and current and char in CUT_PARTICLES and not _is_hiragana(current[-1][0]):
                # 「書類をなくした」: a particle right after a noun ends it.
                parts.append(current)
                current = []
                kana = 1
                continue
            kana += 1
        else:
            if current and kana and (kana >= 2 or current[-1][0] in JOINING_KANA):
                parts.append(current)
                current = []
            kana = 0
        current.append(triple)
    if current:
        parts.append(current)
    return parts


def _stemmed(query, piece, vocabulary):
    """One kana/kanji word of a query as (tokens, expansion, alternatives): a particle
    after it dropped (電話で → 電話); an inflected verb or adjective cut to the kanji of its
    stem (捨てた → 捨, 教えてしまった → 教, 黒く → 黒, 貼り出した → 貼り出), which a
    one-kanji word finds at the start of any bigram (捨て, 捨象 …), since the cases name
    the act with a noun, never with the query's okurigana; a word or stem the vocabulary
    knows (a stem of one of its verbs included) also finds that word's alternatives."""
    name = "".join(c[0] for c in piece)
    if name in STOP_WORDS or all(_is_hiragana(c[0]) for c in piece):
        if name not in STOP_WORDS and name not in FUNCTION_WORDS:
            yield [token for token, _, _ in analysis.run_tokens("cjk", piece)], None, []
        return
    tokens = [token for token, _, _ in analysis.run_tokens("cjk", _stem_chars(piece))]
    entry = vocabulary.stem_entry(word_of(tokens)) \
        if vocabulary is not None and len(vocabulary) else None
    if entry is None:
        yield tokens, None, []
        return
    added = [written for written, _ in entry.alternatives]
    yield tokens, (query[piece[0][1]:piece[-1][2]], added), \
        [a for a in (_tokens(w) for w in added) if a]


def stem(word: str) -> str:
    """The folded stem of a word as a query sees it (「捨てた」 → 捨, 「電話で」 → 電話);
    the vocabulary indexes its words by this too."""
    chars = analysis.normalize(word)
    if not chars or not all(analysis._is_cjk(c[0]) for c in chars) \
            or all(_is_hiragana(c[0]) for c in chars):
        return "".join(c[0] for c in chars)
    return "".join(c[0] for c in _stem_chars(chars))


def _stem_chars(piece):
    """``piece`` without its trailing kana when they are a particle or end like an
    inflected word (``INFLECTED_ENDINGS``); else unchanged (漏れ, 手続き, ずれ stay)."""
    text = "".join(c[0] for c in piece)
    end = len(piece)
    while end and _is_hiragana(text[end - 1]):
        end -= 1
    tail = text[end:]
    if not tail or end == 0:
        return piece
    if tail in CUT_PARTICLES or tail.endswith(INFLECTED_ENDINGS):
        return piece[:end]
    return piece


def _tokens(text: str) -> list[str]:
    return [token for token, _, _ in analysis.tokens(text)]


def _backoffs(tokens: list[str], weight: float, idf):
    """Compounds are written with other heads and tails (委託先 ~ 委託業者, 誤送付 ~ 誤って
    送付): a three-character kana/kanji word also counts, for a share, where only its first
    or last two characters are found; a four-character one (two words, 古紙回収) where
    both halves are found apart."""
    if not all(len(t) == 2 and analysis._is_cjk(t[0]) and analysis._is_cjk(t[1]) for t in tokens):
        return []
    if len(tokens) == 2:
        return [([piece], min(weight, idf(piece)) * BACKOFF) for piece in ([tokens[0]], [tokens[1]])]
    if len(tokens) == 3:
        return [([[tokens[0]], [tokens[2]]], weight * BACKOFF)]
    return []


def idf(doc_count: int, frequency: int) -> float:
    return math.log(1 + doc_count / max(frequency, 1))


# --- scoring one segment ------------------------------------------------------------

def score_segment(plan: Plan, view, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(scores, matched) for the documents of one index segment.

    ``view`` gives boolean masks: ``view.word(field, tokens)`` (the field holds all the
    tokens), ``view.phrase(tokens)`` (one field holds them all), ``view.type_mask(type)``.
    ``allowed`` masks the documents the user may see under the active filters.
    """
    n = allowed.shape[0]
    scores = np.zeros(n, dtype=np.float32)
    if plan.unsearchable:
        return scores, np.zeros(n, dtype=bool)
    if plan.empty:
        return scores, allowed.copy()
    every_core = np.ones(n, dtype=bool) if any(not w.generic for w in plan.words) else None
    found_core = np.zeros(n, dtype=np.float32)
    for word in plan.words:
        best = _best_field_score([word, *word.alternatives], view, n)
        scores += best
        if not word.generic:
            every_core &= best > 0
            found_core += best
    if every_core is not None and plan.several_core_words:
        scores += every_core * found_core * np.float32(ALL_WORDS_BONUS)
    for incident_type in plan.hinted_types:
        scores += view.type_mask(incident_type) * np.float32(TYPE_HINT_WEIGHT)
    # With only "quoted phrases", every allowed case is a candidate for them to filter.
    matched = (scores > 0) & allowed if plan.words or plan.hinted_types else allowed.copy()
    for phrase in plan.phrases:
        found = view.phrase(phrase)
        matched &= found
        scores += found * np.float32(1.0)
    for excluded in plan.excluded:
        for name in FIELD_WEIGHTS:
            matched &= ~view.word(name, excluded)
    return scores, matched


def _best_field_score(candidates: list[Word], view, n: int) -> np.ndarray:
    """Per document, the best of the candidates' weights times the weight of the best field
    holding it (the typed word and the words the vocabulary gives for it: the best counts,
    never their sum)."""
    best = np.zeros(n, dtype=np.float32)
    for candidate in candidates:
        for name, field_weight in FIELD_WEIGHTS.items():
            # Most alternatives are in no document of a field: skip their arithmetic
            # (the vocabulary multiplies the candidates; bench_search p95).
            mask = view.word(name, candidate.tokens)
            if mask.any():
                np.maximum(best, mask * np.float32(candidate.weight * field_weight), out=best)
            for pieces, share in candidate.backoffs:
                backoff = view.word(name, pieces[0])
                for piece in pieces[1:]:
                    if not backoff.any():
                        break
                    backoff = backoff & view.word(name, piece)
                if backoff.any():
                    np.maximum(best, backoff * np.float32(share * field_weight), out=best)
    return best


def wants_feedback(plan: Plan) -> bool:
    """Whether the query is one feedback may widen: it has words, and neither "quoted
    phrases" nor -exclusions, with which the searcher says exactly what must be in a case
    and what must not."""
    return bool(plan.words) and not plan.phrases and not plan.excluded


@dataclass
class Feedback:
    """What the first ranking's best cases add to a query (``feedback``)."""
    words: list[Word] = field(default_factory=list)
    types: dict[str, float] = field(default_factory=dict)


def feedback(plan: Plan, types: list[str], texts: list[str], idf, rough_idf=None) -> Feedback:
    """Pseudo-relevance feedback from the first ranking's best cases (at most
    ``FEEDBACK_DOCS``, best first): ``types`` their incident types, ``texts`` their title and
    summary, ``idf(tokens)`` as for ``plan_query``; ``rough_idf(token)``, a cheap estimate of
    it, if given, picks the bigrams that ``idf`` then weighs.

    A type counts when at least ``FEEDBACK_TYPE_SHARE`` of ``FEEDBACK_DOCS`` cases have it
    (the best cases agreeing is what makes the first pass trustworthy: a handful of hits or
    a mixed top adds nothing). A bigram counts when at least ``FEEDBACK_TERM_MIN_DOCS`` of the
    texts hold it and the query does not; the ``FEEDBACK_TERMS`` with the highest share × IDF
    are kept, each weighing ``FEEDBACK_TERM_WEIGHT`` of that. Words that name every case
    (GENERIC_WORDS), one-character tokens and bigrams more than ``FEEDBACK_TERM_MAX_SHARE``
    of the cases hold are never added, and none at all from fewer than
    ``FEEDBACK_TERM_MIN_CASES`` texts."""
    result = Feedback()
    counts: dict[str, int] = {}
    for incident_type in types:
        if incident_type:
            counts[incident_type] = counts.get(incident_type, 0) + 1
    result.types = {t: FEEDBACK_TYPE_WEIGHT * c / len(types) for t, c in counts.items()
                    if c >= max(FEEDBACK_TYPE_SHARE * len(types), FEEDBACK_MIN_AGREEING)}
    held: dict[str, int] = {}
    if len(texts) < FEEDBACK_TERM_MIN_CASES:
        texts = []
    for text in texts:
        for token in {token for token, _, _ in analysis.tokens(text)}:
            if len(token) > 1 and token not in plan.terms and token not in _GENERIC:
                held[token] = held.get(token, 0) + 1
    shared = [(count / len(texts), token) for token, count in held.items()
              if count >= FEEDBACK_TERM_MIN_DOCS]  # none when texts is empty
    if rough_idf is not None:
        # Weighing every shared bigram exactly reads its postings in every field (most of
        # the cost at 20,000 cases); the index's own counts pick the few worth weighing.
        shared = sorted(shared, key=lambda pair: (-pair[0] * rough_idf(pair[1]), pair[1]))
        shared = shared[:FEEDBACK_TERMS]
    distinctive = math.log(1 + 1 / FEEDBACK_TERM_MAX_SHARE)  # idf() of that share
    candidates = sorted(((share * weight, token) for share, token in shared
                         if (weight := idf([token])) >= distinctive),
                        key=lambda pair: (-pair[0], pair[1]))
    result.words = [Word([token], FEEDBACK_TERM_WEIGHT * score, False)
                    for score, token in candidates[:FEEDBACK_TERMS]]
    return result


def score_feedback(added: Feedback, view) -> np.ndarray:
    """What ``feedback`` adds to the score of each document of a segment."""
    scores = np.zeros(view.n, dtype=np.float32)
    for word in added.words:
        scores += _best_field_score([word], view, view.n)
    for incident_type, lift in added.types.items():
        scores += view.type_mask(incident_type) * np.float32(lift)
    return scores


def top(scores: np.ndarray, dates: np.ndarray, matched: np.ndarray, k: int, by_date: bool):
    """Indices of the best ``k`` matched documents: by score then date, or by date."""
    candidates = np.flatnonzero(matched)
    if candidates.size == 0 or k <= 0:
        return candidates[:0]
    if by_date:
        keys = (-scores[candidates], -dates[candidates])  # lexsort: last key is primary
    else:
        keys = (-dates[candidates], -scores[candidates])
    if candidates.size > 4 * k:
        # Only the best k matter: cut down on the primary key before a full sort.
        primary = keys[-1]
        threshold = np.partition(primary, k - 1)[k - 1]
        keep = primary <= threshold
        candidates = candidates[keep]
        keys = tuple(key[keep] for key in keys)
    order = np.lexsort(keys)
    return candidates[order[:k]]


# --- showing why a case matched ----------------------------------------------------

def snippet(text: str, terms, *, width: int = 110) -> Markup:
    """A window of ``text`` around the first matched terms, the matched spans of the
    original spelling wrapped in <mark>; everything else escaped."""
    if not text:
        return Markup("")
    return _snippet(text, frozenset(terms), width)


@functools.lru_cache(maxsize=4096)  # a pure function of its arguments; tokenizing is the cost
def _snippet(text: str, terms: frozenset, width: int) -> Markup:
    prefixes = {t for t in terms if len(t) == 1}
    spans = []
    for token, start, end in analysis.tokens(text):
        if token in terms or (len(token) == 2 and token[0] in prefixes):
            if spans and start <= spans[-1][1]:
                spans[-1] = (spans[-1][0], max(end, spans[-1][1]))
            else:
                spans.append((start, end))
    begin = max(0, spans[0][0] - width // 4) if spans else 0
    end = min(len(text), begin + width)
    parts, cursor = [], begin
    for start, stop in spans:
        if start < begin or start >= end:
            continue
        parts.append(escape(text[cursor:start]))
        parts.append(Markup("<mark>") + escape(text[start:min(stop, end)]) + Markup("</mark>"))
        cursor = min(stop, end)
    parts.append(escape(text[cursor:end]))
    return (Markup("…" if begin > 0 else "") + Markup("").join(parts)
            + Markup("…" if end < len(text) else ""))
