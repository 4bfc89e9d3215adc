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
"""

import functools
import math
from dataclasses import dataclass, field

import numpy as np
from markupsafe import Markup, escape

from kb import analysis

MAX_QUERY_LENGTH = 100
# How much a query word found in a field counts (times the word's weight).
FIELD_WEIGHTS = {"title": 1.5, "body": 1.0, "measures": 1.0, "meta": 0.7}
# A case holding every (non-generic) query word gets this share of their weights again.
ALL_WORDS_BONUS = 0.5
TYPE_HINT_WEIGHT = 1.5
BACKOFF = 0.5  # share of a compound's weight when only its parts are found
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


@dataclass
class Plan:
    words: list[Word] = field(default_factory=list)
    phrases: list[list[str]] = field(default_factory=list)
    excluded: list[list[str]] = field(default_factory=list)
    hinted_types: list[str] = field(default_factory=list)
    terms: frozenset = frozenset()
    notices: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.words and not self.phrases and not self.hinted_types

    @property
    def bonus(self) -> float:
        core = [word.weight for word in self.words if not word.generic]
        return ALL_WORDS_BONUS * sum(core) if len(core) > 1 else 0.0


def plan_query(text: str, idf) -> Plan:
    """Understand a query. ``idf(tokens)`` gives the weight of a word in the index.

    "quoted phrases" (when the quotes balance) must appear as written; -word excludes;
    AND/OR/NOT and Whoosh syntax typed by accident are plain text, never an error.
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
    for whole, parts in analysis.query_runs(" ".join(plain).translate(SYNTAX)):
        names.append(word_of(whole))
        terms.update(whole)
        for tokens in parts:
            name = word_of(tokens)
            names.append(name)
            terms.update(tokens)
            generic = name in _GENERIC
            weight = idf(tokens) * (GENERIC_WEIGHT if generic else 1.0)
            plan.words.append(Word(tokens, weight, generic, _backoffs(tokens, weight, idf)))
    terms.update(token for phrase in plan.phrases for token in phrase)
    plan.terms = frozenset(terms)
    plan.hinted_types = sorted({t for name in names for t in _TYPE_HINTS.get(name, ())})
    return plan


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
    if plan.empty:
        return scores, allowed.copy()
    every_core = np.ones(n, dtype=bool) if any(not w.generic for w in plan.words) else None
    for word in plan.words:
        best = np.zeros(n, dtype=np.float32)
        for name, field_weight in FIELD_WEIGHTS.items():
            mask = view.word(name, word.tokens)
            np.maximum(best, mask * np.float32(word.weight * field_weight), out=best)
            for pieces, share in word.backoffs:
                backoff = np.ones(n, dtype=bool)
                for piece in pieces:
                    backoff &= view.word(name, piece)
                np.maximum(best, backoff * np.float32(share * field_weight), out=best)
        scores += best
        if not word.generic:
            every_core &= best > 0
    if every_core is not None and plan.bonus:
        scores += every_core * np.float32(plan.bonus)
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
