"""The full-text index: the only module that imports Whoosh (with kb/analysis.py).

The index is a disposable cache of SQLite. Documents are written after the database
commit (``kb.db`` runs the hook registered here), updated idempotently by case id, and
the whole index can be rebuilt from SQLite at any time (``flask --app wsgi reindex``);
``check`` compares it with SQLite. A missing or old-schema index is rebuilt when the app
starts. Which of the hits a user may read is decided by the database, not the index.
"""

import logging
import math
import shutil
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from markupsafe import Markup, escape
from whoosh import index as whoosh_index
from whoosh import query as Q
from whoosh import sorting
from whoosh.collectors import TimeLimit, TimeLimitCollector
from whoosh.fields import ID, KEYWORD, STORED, TEXT, Schema

from kb import analysis, cases

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
INDEX_FOLDER = f"index-v{SCHEMA_VERSION}.{analysis.ANALYSIS_VERSION}"
WRITER_TIMEOUT = 10.0
MAX_QUERY_LENGTH = 100
TIME_LIMIT = 0.45  # seconds a query may spend collecting before partial results are shown
CACHE_SIZE = 256

# Text fields and their weights: a word in the title counts most.
TEXT_FIELDS = {"title": 3.0, "body": 1.0, "measures": 0.8, "meta": 0.6}
# How much a query word found in a field counts (times the word's IDF).
MATCH_FIELD_WEIGHTS = {"title": 1.5, "body": 1.0, "measures": 1.0, "meta": 0.7}
# A case holding every (non-generic) query word gets this share of their weights again.
ALL_SEGMENTS_BOOST = 0.5
TYPE_HINT_BOOST = 1.5
BACKOFF = 0.5  # share of a compound's weight when only its head or tail is found
TIE_BREAK = 0.01  # BM25, only to order cases that match the same words
PARTIAL_BIGRAM_BOOST = 0.15
# Words every case of this knowledge base is about: they say little about which case is
# wanted, so they count for less and are not needed for the all-words bonus.
GENERIC_WORDS = {"漏えい", "個人情報", "情報", "事故", "事案", "事例", "再発防止", "対策", "流出",
                 "ヒヤリハット", "ヒヤリ", "職員", "市", "区"}
GENERIC_BOOST = 0.25
FACETS = ("kind", "origin", "task", "incident_type", "department", "municipality", "year",
          "items", "rule_status")

# A query word that names a kind of incident lifts cases of that type even when their
# text says it another way (「BCC」 finds 宛先欄に入力 cases filed as email_missend).
# Keys are folded the way queries are (kb.analysis), values are incident types.
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
    "シュレッダ": ("improper_disposal",), "溶解": ("improper_disposal",),
    "目的外": ("staff_misconduct",), "目的外利用": ("staff_misconduct",),
    "目的外閲覧": ("staff_misconduct",), "懲戒": ("staff_misconduct",),
    "懲戒処分": ("staff_misconduct",), "不正閲覧": ("staff_misconduct",),
    "電話": ("oral_disclosure",), "口頭": ("oral_disclosure",), "なりすまし": ("oral_disclosure",),
    "設定": ("system_misconfig",), "設定ミス": ("system_misconfig",),
}


def _segment_word(tokens: list[str]) -> str:
    """The folded text of a segment, from its overlapping bigrams."""
    return tokens[0] + "".join(token[-1] for token in tokens[1:]) if tokens else ""


_TYPE_HINTS = {_segment_word([t for t, _, _ in analysis.tokens(word)]): types
               for word, types in TYPE_HINTS.items()}


def build_schema() -> Schema:
    text = analysis.JapaneseAnalyzer()
    return Schema(
        case_id=ID(stored=True, unique=True),
        stamp=STORED,
        title=TEXT(analyzer=text, phrase=True, field_boost=TEXT_FIELDS["title"]),
        body=TEXT(analyzer=text, phrase=True, field_boost=TEXT_FIELDS["body"]),
        measures=TEXT(analyzer=text, phrase=True, field_boost=TEXT_FIELDS["measures"]),
        meta=TEXT(analyzer=text, phrase=True, field_boost=TEXT_FIELDS["meta"]),
        kind=ID(sortable=True), origin=ID(sortable=True), status=ID,
        task=ID(sortable=True), incident_type=ID(sortable=True),
        rule_status=ID(sortable=True), department=ID(sortable=True),
        municipality=ID(sortable=True), year=ID(sortable=True),
        items=KEYWORD(commas=True, scorable=False),
        reporter=ID, department_id=ID,
        date=ID(sortable=True),
    )


# --- opening ----------------------------------------------------------------------

_indexes: dict[str, whoosh_index.Index] = {}
_lock = threading.Lock()


def index_path(data_dir) -> Path:
    return Path(data_dir) / INDEX_FOLDER


def get_index(data_dir):
    """The index in ``data_dir``, created empty if it does not exist."""
    path = index_path(data_dir)
    key = str(path)
    with _lock:
        if key not in _indexes or not whoosh_index.exists_in(path):
            path.mkdir(parents=True, exist_ok=True)
            _indexes[key] = (whoosh_index.open_dir(path) if whoosh_index.exists_in(path)
                             else whoosh_index.create_in(path, build_schema()))
        return _indexes[key]


def _forget(data_dir) -> None:
    with _lock:
        _indexes.pop(str(index_path(data_dir)), None)


# --- writing ------------------------------------------------------------------------

def _document(row: dict) -> dict:
    """The Whoosh document of a case row from ``cases.index_rows``."""
    date = row["occurred_on"] or row["discovered_on"] or row["published_on"] or ""
    department = row["department_label"] or row["department_name"] or ""
    return {
        "case_id": str(row["case_id"]),
        "stamp": cases.index_stamp(row),
        "title": row["title"] or "",
        "body": "\n".join(filter(None, (row["summary"], row["how_found"],
                                        row["immediate_action"], row["potential_outcome"],
                                        row["secondary_damage"], row["whys"],
                                        row["root_cause"], row["causes"]))),
        "measures": "\n".join(filter(None, (row["countermeasure_texts"], row["lesson"],
                                            row["prevention_idea"]))),
        "meta": "\n".join(filter(None, (row["data_items"], department, row["municipality"],
                                        row["prefecture"], row["channel"]))),
        "kind": row["kind"], "origin": row["origin"], "status": row["status"],
        "task": row["task"] or "", "incident_type": row["incident_type"] or "",
        "rule_status": row["rule_status"] or "", "department": department,
        "municipality": row["municipality"] or "", "year": date[:4],
        "items": row["item_codes"] or "",
        "reporter": str(row["reporter_id"] or ""),
        "department_id": str(row["department_id"] or ""),
        "date": date,
    }


def index_cases(ix, db, case_ids) -> None:
    """Bring the documents of these cases in line with SQLite (add, replace or delete)."""
    case_ids = sorted(set(case_ids))
    if not case_ids:
        return
    rows = {row["case_id"]: row for row in cases.index_rows(db, case_ids)}
    with ix.writer(timeout=WRITER_TIMEOUT) as writer:
        for case_id in case_ids:
            if case_id in rows:
                writer.update_document(**_document(rows[case_id]))
            else:
                writer.delete_by_term("case_id", str(case_id))


def index_case(ix, db, case_id: int) -> None:
    index_cases(ix, db, [case_id])


def unindex_case(ix, case_id: int) -> None:
    with ix.writer(timeout=WRITER_TIMEOUT) as writer:
        writer.delete_by_term("case_id", str(case_id))


def rebuild(db, data_dir, *, progress=None, procs: int = 1) -> int:
    """Build a fresh index from SQLite beside the old one, then swap it in.

    ``progress`` is called with the number of documents added since the last call.
    Searches keep using the old index until the swap. Returns the number of documents.
    """
    path = index_path(data_dir)
    fresh = path.with_name(path.name + ".new")
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir(parents=True)
    ix = whoosh_index.create_in(fresh, build_schema())
    options = {"procs": procs, "limitmb": 128, "multisegment": True} if procs > 1 else {}
    count = 0
    with ix.writer(**options) as writer:
        for row in cases.index_rows(db):
            writer.add_document(**_document(row))
            count += 1
            if progress and count % 100 == 0:
                progress(100)
    if progress:
        progress(count % 100)
    old = path.with_name(path.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        path.rename(old)
    fresh.rename(path)
    shutil.rmtree(old, ignore_errors=True)
    _forget(data_dir)
    _cache.clear()
    # Indexes of older schema versions are no longer used.
    for stale in Path(data_dir).glob("index-v*"):
        if stale.name != path.name:
            shutil.rmtree(stale, ignore_errors=True)
    return count


def check(ix, db) -> dict[str, list[int]]:
    """Case ids whose document is missing, stale (older than SQLite) or orphaned."""
    expected = cases.index_stamps(db)
    with ix.searcher() as searcher:
        indexed = {int(fields["case_id"]): fields.get("stamp")
                   for fields in searcher.all_stored_fields()}
    return {
        "missing": sorted(set(expected) - set(indexed)),
        "stale": sorted(i for i in set(expected) & set(indexed) if expected[i] != indexed[i]),
        "orphaned": sorted(set(indexed) - set(expected)),
    }


def heal(ix, db, drift: dict[str, list[int]]) -> None:
    """Re-index what ``check`` found missing or stale and drop the orphans."""
    index_cases(ix, db, drift["missing"] + drift["stale"] + drift["orphaned"])


def is_current(data_dir) -> bool:
    """Whether an index of the current schema exists."""
    return whoosh_index.exists_in(index_path(data_dir))


# --- querying ---------------------------------------------------------------------------

@dataclass
class ParsedQuery:
    query: object | None
    terms: frozenset = frozenset()
    notices: list[str] = field(default_factory=list)
    segments: list[list[str]] = field(default_factory=list)


OPERATORS = {"AND", "OR", "NOT", "&&", "||"}
SYNTAX = str.maketrans({c: " " for c in "()[]{}:^~*?\\/+!"})


def parse_query(text: str, searcher=None) -> ParsedQuery:
    """Our own parser: "quoted phrases" (when the quotes balance), -exclusions, and plain
    words cut at spaces and script changes. Whoosh syntax typed by accident is plain text.

    Scoring: each query word found in a case adds its weight (rarer words weigh more,
    words every case is about weigh little), once, whichever field it is in (the title
    counts most). A case with every word gets a bonus; a word naming an incident type
    lifts cases of that type; BM25 breaks ties. ``searcher`` supplies the word weights.
    """
    notices = []
    text = (text or "").strip()
    if len(text) > MAX_QUERY_LENGTH:
        text = text[:MAX_QUERY_LENGTH]
        notices.append(f"検索語が長すぎるため、先頭の{MAX_QUERY_LENGTH}文字で検索しました。")
    phrases, excluded = [], []
    if text.count('"') % 2 == 0 and '"' in text:
        parts = text.split('"')
        phrases = [p for p in parts[1::2] if p.strip()]
        text = " ".join(parts[0::2])
    text = text.replace('"', " ")
    words = []
    for word in text.split():
        if word in OPERATORS:
            continue
        if word.startswith("-") and len(word) > 1:
            excluded.append(word[1:])
        else:
            words.append(word)
    runs = analysis.query_runs(" ".join(words).translate(SYNTAX))

    core, weak, ties, names = [], [], [], []
    total_weight = 0.0
    for whole, parts in runs:
        names.append(_segment_word(whole))
        for part in parts:
            word = _segment_word(part)
            names.append(word)
            weight = _weight(searcher, part) * (GENERIC_BOOST if word in GENERIC_WORDS else 1.0)
            clause = _segment_match(searcher, part, weight)
            (weak if word in GENERIC_WORDS else core).append(clause)
            if word not in GENERIC_WORDS:
                total_weight += weight
            ties.append(_segment_query(part))
        if len(parts) > 1:
            ties.append(_phrase_query(whole))
    required = [_phrase_query(tokens) for phrase in phrases
                for tokens in [_flatten(phrase)] if tokens]
    clauses = core + weak
    if not clauses and not required:
        return ParsedQuery(None, notices=notices)
    if len(core) > 1:
        clauses.append(Q.ConstantScoreQuery(Q.And(core), score=ALL_SEGMENTS_BOOST * total_weight))
    clauses += [Q.ConstantScoreQuery(Q.Term("incident_type", t), score=TYPE_HINT_BOOST)
                for t in _hinted_types(names)]
    # BM25 only orders what the words above matched; it never adds a match of its own.
    scored = Q.AndMaybe(Q.Or(clauses), Q.Or(ties + required, boost=TIE_BREAK))
    query = Q.And([scored] + required) if required else scored
    exclusions = [_phrase_query(tokens) for word in excluded
                  for tokens in [_flatten(word)] if tokens]
    if exclusions:
        query = Q.AndNot(query, Q.Or(exclusions))
    terms = frozenset(token for whole, parts in runs for token in whole
                      + [t for part in parts for t in part])
    terms |= frozenset(token for phrase in phrases for token in _flatten(phrase))
    return ParsedQuery(query, terms, notices, [whole for whole, _ in runs])


def _weight(searcher, tokens: list[str]) -> float:
    """An IDF for a query word: from the rarest of its bigrams (an upper bound on how
    many cases hold the whole word)."""
    if searcher is None:
        return 1.0
    total = max(searcher.doc_count(), 1)
    if len(tokens) == 1 and len(tokens[0]) == 1 and analysis._is_cjk(tokens[0]):
        frequency = total / 2  # a one-character word matches a great many cases
    else:
        frequency = min(max(searcher.doc_frequency(name, token) for name in TEXT_FIELDS)
                        for token in tokens)
    return math.log(1 + total / max(frequency, 1))


def _field_query(name: str, tokens: list[str]):
    if len(tokens) == 1 and len(tokens[0]) == 1 and analysis._is_cjk(tokens[0]):
        return Q.Prefix(name, tokens[0])
    if len(tokens) == 1:
        return Q.Term(name, tokens[0])
    return Q.Phrase(name, tokens)


def _segment_match(searcher, tokens: list[str], weight: float):
    """The word's weight, times the weight of the best field it is found in. A kana/kanji
    compound of three or more characters also counts, for half, where only its first or
    last two characters are found (委託先 → 委託, 誤送付 → 送付): compounds are written
    with other heads and tails (委託業者, 誤って送付)."""
    options = [(Q.Or([_field_query(name, tokens)]), name, weight) for name in MATCH_FIELD_WEIGHTS]
    compound = all(len(t) == 2 and analysis._is_cjk(t[0]) and analysis._is_cjk(t[1])
                   for t in tokens)
    if compound and len(tokens) == 2:
        for piece in ([tokens[0]], [tokens[-1]]):
            share = min(weight, _weight(searcher, piece)) * BACKOFF
            options += [(_field_query(name, piece), name, share) for name in MATCH_FIELD_WEIGHTS]
    elif compound and len(tokens) == 3:
        # Four characters are mostly two words (古紙回収 = 古紙 + 回収): both, anywhere.
        halves = ([tokens[0]], [tokens[2]])
        share = weight * BACKOFF
        options += [(Q.And([_field_query(name, half) for half in halves]), name, share)
                    for name in MATCH_FIELD_WEIGHTS]
    return Q.DisjunctionMax([Q.ConstantScoreQuery(query, score=share * MATCH_FIELD_WEIGHTS[name])
                             for query, name, share in options])


def _flatten(phrase: str) -> list[str]:
    return [token for token, _, _ in analysis.tokens(phrase)]


def _segment_query(tokens: list[str]):
    """BM25 on one query word in every text field, used to break ties: the word as a
    phrase, plus a little credit for partial matches."""
    per_field = []
    for name in TEXT_FIELDS:
        per_field.append(_field_query(name, tokens))
        if len(tokens) >= 3:
            per_field.append(Q.Or([Q.Term(name, t) for t in tokens], boost=PARTIAL_BIGRAM_BOOST))
    return Q.Or(per_field)


def _phrase_query(tokens: list[str]):
    return Q.Or([_field_query(name, tokens) for name in TEXT_FIELDS])


def _hinted_types(words) -> list[str]:
    types = set()
    for word in words:
        types.update(_TYPE_HINTS.get(word, ()))
    return sorted(types)


def visibility_filter(user):
    """The index's view of what ``user`` may read (the database has the last word)."""
    allowed = [Q.Term("status", "published"), Q.Term("reporter", str(user.user_id))]
    if user.has_role("reviewer"):
        allowed += [Q.Term("status", "submitted"), Q.Term("status", "approved")]
    elif user.has_role("manager"):
        allowed.append(Q.And([Q.Term("department_id", str(user.department_id)),
                              Q.Or([Q.Term("status", "submitted"),
                                    Q.Term("status", "approved")])]))
    return Q.Or(allowed)


@dataclass
class SearchResult:
    total: int
    hits: list[dict]
    facets: dict[str, dict[str, int]]
    partial: bool
    notices: list[str]
    terms: frozenset


_cache: "OrderedDict[tuple, tuple]" = OrderedDict()
_cache_lock = threading.Lock()


def _visibility_key(user) -> tuple:
    if user.has_role("reviewer"):
        return ("reviewer", user.user_id)
    if user.has_role("manager"):
        return ("manager", user.user_id, user.department_id)
    return ("staff", user.user_id)


def search_cases(ix, db, user, text: str, *, filters: dict | None = None, sort: str = "relevance",
                 page: int = 1, page_size: int = 20, time_limit: float = TIME_LIMIT) -> SearchResult:
    """One page of the cases matching ``text`` that ``user`` may read, with facet counts.

    ``filters`` maps facet names to a value. ``sort`` is "relevance" or "date". When the
    time limit is reached the hits found so far are returned with ``partial`` set.
    """
    parsed = parse_query(text)  # for the notices and the terms to highlight
    filters = {k: v for k, v in (filters or {}).items() if k in FACETS and v}
    generation = ix.latest_generation()
    key = (generation, text, tuple(sorted(filters.items())), sort, page, page_size,
           _visibility_key(user))
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None:
            _cache.move_to_end(key)
    if cached is None:
        cached = _run(ix, text, user, filters, sort, page, page_size, time_limit)
        if not cached[3]:  # partial results are not worth keeping
            with _cache_lock:
                _cache[key] = cached
                while len(_cache) > CACHE_SIZE:
                    _cache.popitem(last=False)
    total, ranked, facets, partial = cached
    rows = cases.rows_for_results(db, user, [case_id for case_id, _ in ranked])
    hits = []
    for case_id, score in ranked:
        if case_id in rows:
            row = rows[case_id]
            row["score"] = score
            row["snippet"] = snippet(row.get("summary") or "", parsed.terms)
            hits.append(row)
    notices = list(parsed.notices)
    if partial:
        notices.append("検索に時間がかかったため、途中までの結果を表示しています。"
                       "言葉を増やすか、絞り込みを使ってください。")
    return SearchResult(total, hits, facets, partial, notices, parsed.terms)


def _run(ix, text, user, filters, sort, page, page_size, time_limit):
    conditions = [visibility_filter(user)]
    for name, value in filters.items():
        conditions.append(Q.Term(name, value))
    restrict = Q.And(conditions)
    groupedby = {name: sorting.FieldFacet(name, allow_overlap=(name == "items"),
                                          maptype=sorting.Count) for name in FACETS}
    sortedby = sorting.FieldFacet("date", reverse=True) if sort == "date" else None
    with ix.searcher() as searcher:
        parsed = parse_query(text, searcher)
        query = parsed.query if parsed.query is not None else Q.Every()
        if parsed.query is None:
            sortedby = sorting.FieldFacet("date", reverse=True)
        # The restriction is part of the query, not a collector filter: Whoosh's time
        # limit collector would skip a FilterCollector beneath it.
        query = Q.And([query, Q.ConstantScoreQuery(restrict, score=0.0)])
        collector = searcher.collector(limit=None, groupedby=groupedby, sortedby=sortedby)
        limited = TimeLimitCollector(collector, timelimit=time_limit, use_alarm=False)
        partial = False
        try:
            searcher.search_with_collector(query, limited)
        except TimeLimit:
            partial = True
        results = limited.results()
        total = results.scored_length()
        start = (max(page, 1) - 1) * page_size
        ranked = []
        for hit in results[start:start + page_size]:
            ranked.append((int(hit["case_id"]), round(hit.score or 0.0, 4)))
        facets = {}
        for name in FACETS:
            try:
                counts = results.groups(name)
            except KeyError:
                counts = {}
            facets[name] = {value: count for value, count in counts.items() if value}
    return total, ranked, facets, partial


def similar_cases(ix, db, user, *, text: str, exclude: int | None = None, limit: int = 5,
                  incident_type: str | None = None) -> list[dict]:
    """Published cases most like ``text`` (a case's title and summary, or a draft being
    typed): its key terms, weighted, plus a lift for the same incident type."""
    if not text or not text.strip():
        return []
    with ix.searcher() as searcher:
        keys = searcher.key_terms_from_text("body", text[:4000], numterms=24)
        if not keys:
            return []
        clauses = [Q.Term(name, term, boost=weight * TEXT_FIELDS[name])
                   for term, weight in keys for name in ("title", "body", "measures")]
        if incident_type:
            clauses.append(Q.Term("incident_type", incident_type, boost=1.0))
        query = Q.Or(clauses)
        restrict = Q.Term("status", "published")
        if exclude is not None:
            restrict = Q.AndNot(restrict, Q.Term("case_id", str(exclude)))
        results = searcher.search(query, limit=limit, filter=restrict)
        ranked = [(int(hit["case_id"]), hit.score) for hit in results]
    rows = cases.rows_for_results(db, user, [case_id for case_id, _ in ranked])
    return [dict(rows[case_id], score=score) for case_id, score in ranked if case_id in rows]


def snippet(text: str, terms, *, width: int = 110) -> Markup:
    """A window of ``text`` around the first cluster of matched terms, with the matched
    spans of the original spelling wrapped in <mark>; the rest is escaped."""
    if not text:
        return Markup("")
    spans = []
    for token, start, end in analysis.tokens(text):
        if token in terms or (len(token) == 2 and any(len(t) == 1 and token.startswith(t)
                                                      for t in terms)):
            if spans and start <= spans[-1][1]:
                spans[-1] = (spans[-1][0], max(end, spans[-1][1]))
            else:
                spans.append((start, end))
    begin = 0
    if spans:
        begin = max(0, spans[0][0] - width // 4)
    end = min(len(text), begin + width)
    parts, cursor = [], begin
    for start, stop in spans:
        if start < begin or start >= end:
            continue
        parts.append(escape(text[cursor:start]))
        parts.append(Markup("<mark>") + escape(text[start:min(stop, end)]) + Markup("</mark>"))
        cursor = min(stop, end)
    parts.append(escape(text[cursor:end]))
    prefix = "…" if begin > 0 else ""
    suffix = "…" if end < len(text) else ""
    return Markup(prefix) + Markup("").join(parts) + Markup(suffix)


# --- wiring ---------------------------------------------------------------------------

def _index_after_commit(app):
    def hook(db, case_ids):
        try:
            index_cases(get_index(app.config["DATA_DIR"]), db, case_ids)
        except Exception:  # the report is saved; `reindex --check` heals the index
            log.exception("could not update the search index for cases %s", sorted(case_ids))
    return hook


def ensure_index(app, db) -> bool:
    """Rebuild a missing or old-schema index from SQLite; True if it was rebuilt."""
    if is_current(app.config["DATA_DIR"]) or not db["cases"].exists():
        return False
    started = time.perf_counter()
    count = rebuild(db, app.config["DATA_DIR"])
    log.warning("search index was missing or of an old schema: rebuilt %d cases in %.1f s",
                count, time.perf_counter() - started)
    return True


def init_app(app) -> None:
    app.extensions.setdefault("kb.after_commit", []).append(_index_after_commit(app))
