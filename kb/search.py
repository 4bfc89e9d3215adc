"""The full-text index: the only module that imports Whoosh (with kb/analysis.py).

The index is a disposable cache of SQLite. Documents are written after the database
commit (``kb.indexer`` decides when), updated idempotently by case id, and
the whole index can be rebuilt from SQLite at any time (``flask --app wsgi reindex``);
``check`` compares it with SQLite. A missing or old-schema index is rebuilt when the app
starts. Which of the hits a user may read is decided by the database, not the index.
"""

import itertools
import logging
import math
import os
import shutil
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from whoosh import index as whoosh_index
import numpy as np
from whoosh import formats
from whoosh.codec.whoosh3 import W3LeafMatcher
from whoosh.fields import ID, KEYWORD, STORED, FieldType, Schema
from whoosh.filedb.compound import CompoundStorage
from whoosh.filedb.structfile import BufferFile, StructFile
from whoosh.index import TOC

from kb import analysis, cases, ranking, users, vocabulary

log = logging.getLogger(__name__)

# 4: case_id is a column too (_SegmentData.case_ids); 5: the date is cases.CASE_DATE.
SCHEMA_VERSION = 5
INDEX_FOLDER = f"index-v{SCHEMA_VERSION}.{analysis.ANALYSIS_VERSION}"
WRITER_TIMEOUT = 10.0
TIME_LIMIT = 0.45  # seconds a query may run before the segments searched so far are shown
CACHE_SIZE = 256

FACETS = ("kind", "origin", "task", "incident_type", "department", "municipality", "year",
          "items", "rule_status")


def build_schema() -> Schema:
    # Text fields record only which documents hold a bigram: ranking (kb/ranking.py) needs
    # presence and document frequencies, not positions or BM25 statistics, and indexing
    # without them is faster. They are "scorable" all the same: without a field-length
    # column, whoosh-reloaded 2.7.5 asks the file system whether that column exists once
    # for every posting it writes, which made a rebuild 1.4 times slower.
    def text():
        return FieldType(formats.Existence(), analysis.JapaneseAnalyzer(), scorable=True)

    return Schema(
        # Sortable: a column, read once per segment into an array of case ids; reading a
        # hit's stored fields instead made every new searcher load that segment's
        # stored-field offsets again (README, Performance).
        case_id=ID(stored=True, unique=True, sortable=True),
        stamp=STORED,
        title=text(), body=text(), measures=text(), meta=text(),
        kind=ID(sortable=True), origin=ID(sortable=True), status=ID,
        task=ID(sortable=True), incident_type=ID(sortable=True),
        rule_status=ID(sortable=True), department=ID(sortable=True),
        municipality=ID(sortable=True), year=ID(sortable=True),
        items=KEYWORD(commas=True, scorable=False),
        reporter=ID, department_id=ID,
        date=ID(sortable=True),
    )


# --- opening ----------------------------------------------------------------------

class _Window:
    """A read-only file over a memoryview: reads copy only what they read."""

    def __init__(self, buf):
        self._buf, self._pos = buf, 0

    def read(self, size=-1) -> bytes:
        start = min(self._pos, len(self._buf))
        end = len(self._buf) if size is None or size < 0 else min(start + size, len(self._buf))
        if end > start:
            self._pos = end
        return self._buf[start:end].tobytes()

    def peek(self, size: int = 1) -> bytes:
        # Lets pickle read a block's header in one call instead of one per opcode.
        start = min(self._pos, len(self._buf))
        return self._buf[start:start + min(max(size, 1), 1024)].tobytes()

    def readinto(self, target) -> int:
        data = self.read(len(target))
        memoryview(target).cast("B")[:len(data)] = data
        return len(data)

    def readline(self, size=-1) -> bytes:
        start = min(self._pos, len(self._buf))
        end = len(self._buf) if size is None or size < 0 else min(start + size, len(self._buf))
        for at in range(start, end, 256):  # pickle's text opcodes: short lines
            newline = bytes(self._buf[at:min(at + 256, end)]).find(b"\n")
            if newline >= 0:
                end = at + newline + 1
                break
        return self.read(end - start)

    def seek(self, position: int, whence: int = 0) -> int:
        self._pos = max(0, position + (0, self._pos, len(self._buf))[whence])
        return self._pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        pass


class _MappedFile(BufferFile):
    """Whoosh's ``BufferFile`` without its copy: ``BufferFile`` wraps the memory-mapped part
    of a compound segment file in a ``BytesIO``, which copies it. A searcher opens each
    segment's postings and term files so, and every search opens a searcher: at 100,000
    cases each search copied about 70 MB of the index into the process's private memory,
    and every server thread's heap kept that much (bench_search: 595 MB private; README,
    Performance). Reading the mapped pages in place leaves them to the shared page cache."""

    def __init__(self, buf, name=None, onclose=None):
        StructFile.__init__(self, _Window(buf), name=name, onclose=onclose)
        self._buf = buf


_open_compound_file = CompoundStorage.open_file


def _open_mapped(storage, name, *args, **kwargs):
    """``CompoundStorage.open_file``, reading a memory-mapped segment in place."""
    if storage.is_closed or not storage._source:
        return _open_compound_file(storage, name, *args, **kwargs)
    offset, length = storage.range(name)
    return _MappedFile(memoryview(storage._source)[offset:offset + length], name=name)


CompoundStorage.open_file = _open_mapped  # whoosh-reloaded 2.7.5; see _MappedFile


_indexes: dict[str, whoosh_index.Index] = {}
_lock = threading.Lock()


def index_path(data_dir) -> Path:
    return Path(data_dir) / INDEX_FOLDER


SWAP_WAIT = 2.0  # seconds get_index waits for another process's rebuild to finish its swap


def get_index(data_dir):
    """The index in ``data_dir``, created empty if it does not exist. Opened once per
    process; reopened only if its folder has gone (a rebuild swapped it, a test removed it).

    A folder missing while its ``.old`` sibling exists is a rebuild between its two renames
    (``rebuild``); in this process it holds ``_lock`` then, but another process's (``flask
    reindex`` beside the server) does not, so the index is waited for, up to
    ``SWAP_WAIT``, instead of created empty in the rebuild's way."""
    path = index_path(data_dir)
    key = str(path)
    swapping = path.with_name(path.name + ".old")
    waited = 0.0
    while not path.is_dir() and swapping.is_dir() and waited < SWAP_WAIT:
        time.sleep(0.01)
        waited += 0.01
    with _lock:
        ix = _indexes.get(key)
        if ix is not None and path.is_dir():
            return ix
        path.mkdir(parents=True, exist_ok=True)
        ix = _retrying(lambda: whoosh_index.open_dir(path) if whoosh_index.exists_in(path)
                       else whoosh_index.create_in(path, build_schema()))
        _indexes[key] = ix
        return ix


OPEN_ATTEMPTS = 5


def _retrying(open_):
    """Open a searcher or writer, retrying when a concurrent commit removed the table of
    contents this one was about to read (Whoosh lists, then opens, the newest TOC)."""
    for attempt in range(OPEN_ATTEMPTS):
        try:
            return open_()
        except FileNotFoundError:
            if attempt == OPEN_ATTEMPTS - 1:
                raise
            time.sleep(0.01 * (attempt + 1))


def open_searcher(ix):
    """A searcher of the newest index generation, opened fresh: use it in a ``with`` block.

    Whoosh's ``Searcher.refresh`` is not used: in whoosh-reloaded 2.7.5 it keeps segments that
    a merge has replaced, so documents show twice (see tests/test_search.py). Keeping each
    thread's segment readers open between requests was tried and measured: it saved a few
    milliseconds per search but held about 77 MB per server thread at 100,000 cases.
    """
    searcher = _retrying(ix.searcher)
    _forget_segments(ix.storage.folder,
                     {reader.segment().segment_id() for reader, _ in _segment_readers(searcher)})
    return searcher


def _segment_readers(searcher):
    """(reader, document offset) of each segment; none for an index without documents
    (Whoosh gives it one reader that has no segment)."""
    return [(reader, offset) for reader, offset in searcher.reader().leaf_readers()
            if reader.segment() is not None]


def _forget(data_dir) -> None:
    with _lock:
        _indexes.pop(str(index_path(data_dir)), None)


# --- writing ------------------------------------------------------------------------

def _document(row: dict) -> dict:
    """The Whoosh document of a case row from ``cases.index_rows``."""
    date = row["case_date"] or ""
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


def index_cases(ix, db, case_ids, *, timeout: float = WRITER_TIMEOUT) -> None:
    """Bring the documents of these cases in line with SQLite (add, replace or delete)."""
    case_ids = sorted(set(case_ids))
    if not case_ids:
        return
    rows = {row["case_id"]: row for row in cases.index_rows(db, case_ids)}
    # Threads of this process queue here, instead of polling Whoosh's file lock.
    if not _write_lock.acquire(timeout=timeout):
        raise TimeoutError("the search index is busy")
    try:
        _write(ix, rows, case_ids, timeout)
    finally:
        _write_lock.release()


_write_lock = threading.Lock()


def _write(ix, rows, case_ids, timeout):
    with _retrying(lambda: ix.writer(timeout=timeout)) as writer:
        for case_id in case_ids:
            if case_id in rows:
                writer.update_document(**_document(rows[case_id]))
            else:
                writer.delete_by_term("case_id", str(case_id))


def index_case(ix, db, case_id: int) -> None:
    index_cases(ix, db, [case_id])


def unindex_case(ix, case_id: int) -> None:
    with _retrying(lambda: ix.writer(timeout=WRITER_TIMEOUT)) as writer:
        writer.delete_by_term("case_id", str(case_id))


# A rebuild commits one segment per process for every REBUILD_CHUNK documents per process,
# in chunks of equal size: Whoosh's writer sorts postings in memory up to limitmb and spills
# to disk beyond it, and a spilling writer was two to four times slower (at 512 MB, 12,500
# documents per process fit; 17,000 did not). Fewer, larger segments search faster.
REBUILD_CHUNK = 12_500
REBUILD_LIMIT_MB = 512


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
    options = {"limitmb": REBUILD_LIMIT_MB}
    if procs > 1:
        options.update(procs=procs, multisegment=True)
    total = cases.count_index_rows(db)
    chunk = math.ceil(total / max(1, math.ceil(total / (REBUILD_CHUNK * procs))))
    rows, count = cases.index_rows(db), 0
    while batch := list(itertools.islice(rows, max(chunk, 1))):
        writer = ix.writer(**options)
        try:
            for row in batch:
                writer.add_document(**_document(row))
                count += 1
                if progress and count % 100 == 0:
                    progress(100)
        except BaseException:
            writer.cancel()
            raise
        writer.commit(merge=False)
    if progress:
        progress(count % 100)
    old = path.with_name(path.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    # Under get_index's lock: a search opening the index between the two renames found no
    # folder and created an empty index there, the second rename then failed and every
    # search found nothing. (A search in another process waits in get_index while the
    # .old folder shows the swap.)
    with _lock:
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
    with open_searcher(ix) as searcher:
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
    """Whether an index of the current schema exists and can be read (a damaged segment
    file — a full disk, a copy cut short — makes it as good as missing: rebuilt)."""
    if not whoosh_index.exists_in(index_path(data_dir)):
        return False
    try:
        with whoosh_index.open_dir(index_path(data_dir)).searcher() as searcher:
            for reader, _ in _segment_readers(searcher):
                reader.doc_count_all()
                next(iter(reader.lexicon("status")), None)
        return True
    except Exception:  # noqa: BLE001 - whatever a damaged file raises
        log.exception("search index at %s cannot be read", index_path(data_dir))
        return False


_recovering: set[str] = set()
_recovering_lock = threading.Lock()
UNAVAILABLE = ("検索の索引を修復しています。いまは件名と概要にすべての語を含む事例を新しい順に"
               "表示しています（数分で元に戻ります）。")


def recover(data_dir) -> threading.Thread | None:
    """Rebuild an unreadable index from SQLite in the background (one rebuild at a time per
    data folder; none if the index reads fine again). Returns the thread, if one started."""
    data_dir = str(data_dir)
    with _recovering_lock:
        if data_dir in _recovering:
            return None
        _recovering.add(data_dir)

    def run():
        from kb.db import database_path, open_db  # kb.db imports nothing of ours; kept local

        try:
            _forget(data_dir)
            if not is_current(data_dir):
                db = open_db(database_path(data_dir))
                try:
                    started = time.perf_counter()
                    count = rebuild(db, data_dir)
                    log.warning("search index was unreadable: rebuilt %d cases in %.1f s",
                                count, time.perf_counter() - started)
                finally:
                    db.close()
        except Exception:  # noqa: BLE001 - logged; the next failed search tries again
            log.exception("rebuilding the unreadable search index failed")
        finally:
            with _recovering_lock:
                _recovering.discard(data_dir)

    thread = threading.Thread(target=run, name="kb-index-recovery", daemon=True)
    thread.start()
    return thread


def _unreadable(ix, error: Exception) -> None:
    """After a search failed: if the index cannot be read, start its rebuild (the caller
    then answers from SQLite); if it reads fine, the error is a bug — raised as it is."""
    data_dir = Path(ix.storage.folder).parent
    _forget(data_dir)
    if is_current(data_dir):
        raise error
    log.error("search index unreadable (%s: %s): searching SQLite meanwhile",
              type(error).__name__, error)
    recover(data_dir)


def _fallback(db, user, text: str, filters: dict, page: int, page_size: int) -> "SearchResult":
    """While the index is rebuilt: the plain SQLite listing (every word in the title or
    summary, newest first) under the filters the listing knows, with a notice."""
    known = {name: filters[name] for name in ("kind", "origin", "task", "incident_type")
             if name in filters}
    listing = cases.list_cases(db, user, q=text, page=page, page_size=page_size, **known)
    rows = cases.rows_for_results(db, user, [case["case_id"] for case in listing["cases"]])
    hits = [dict(rows[case["case_id"]], score=0.0, snippet=ranking.snippet(
        rows[case["case_id"]].get("summary") or "", frozenset()))
        for case in listing["cases"] if case["case_id"] in rows]
    return SearchResult(listing["total"], hits, {name: {} for name in FACETS}, False,
                        [UNAVAILABLE], frozenset())


# --- querying ----------------------------------------------------------------------------
# Ranking (kb/ranking.py) works on numpy arrays, one value per document of a segment. The
# arrays of a segment never change (Whoosh writes new segments; deletions are a separate
# set), so they are cached per segment id and shared by all searches until a merge.

SINGLE_VALUED = ("kind", "origin", "task", "incident_type", "department", "municipality",
                 "year", "rule_status")
MASK_CACHE_BYTES = 128 * 2**20  # term masks kept per index, about (one byte per document)


class _SegmentData:
    """What a segment's searches reuse: facet columns as codes, dates, case ids, term masks.

    Every array has one entry per document number, deleted documents included
    (``reader.doc_count_all()``): a deletion only marks a number, so they stay right for
    the segment's life; a merge makes a new segment, with its own data."""

    def __init__(self, reader, index_docs: int):
        self.n = reader.doc_count_all()
        self.codes, self.values = {}, {}
        for name in SINGLE_VALUED:
            column = reader.column_reader(name)
            values, index = [], {}
            codes = np.empty(self.n, dtype=np.int32)
            for docnum, value in enumerate(column):
                value = value or ""
                if value not in index:
                    index[value] = len(values)
                    values.append(value)
                codes[docnum] = index[value]
            self.codes[name], self.values[name] = codes, values
        self.dates = np.array([int((value or "0").replace("-", "").ljust(8, "0")[:8])
                               for value in reader.column_reader("date")], dtype=np.int64)
        # The column's bytes as they are (b"123"): int() takes them, and decoding each
        # first took twice as long (100,000 documents: about 100 ms against 200).
        self.case_ids = np.fromiter(map(int, reader.column_reader("case_id", translate=False)),
                                    dtype=np.int64, count=self.n)
        self.masks: OrderedDict = OrderedDict()
        self.frequencies: dict[tuple[str, str], int] = {}  # _View.doc_frequency
        # The same number of masks in every segment of the index: the bytes add up to
        # MASK_CACHE_BYTES however many segments there are.
        self.max_masks = max(64, MASK_CACHE_BYTES // max(index_docs, 1))
        self.lock = threading.Lock()

    def code_mask(self, name: str, value: str) -> np.ndarray:
        values = self.values[name]
        if value not in values:
            return np.zeros(self.n, dtype=bool)
        return self.codes[name] == values.index(value)


_segments: dict[tuple[str, str], _SegmentData] = {}  # by (index folder, segment id)
_segments_lock = threading.Lock()


def _segment_data(folder: str, reader, index_docs: int) -> _SegmentData:
    key = (folder, reader.segment().segment_id())
    with _segments_lock:
        data = _segments.get(key)
    if data is None:
        data = _SegmentData(reader, index_docs)
        with _segments_lock:
            _segments[key] = data
    return data


def _forget_segments(folder: str, live: set[str]) -> None:
    """Drop the cached data of this index's segments that merges have replaced."""
    with _segments_lock:
        for key in [key for key in _segments if key[0] == folder and key[1] not in live]:
            del _segments[key]


class _View:
    """Boolean masks over one segment, from Whoosh postings, for kb.ranking."""

    def __init__(self, reader, offset: int, searcher, folder: str):
        self.reader, self.offset, self.searcher = reader, offset, searcher
        self.data = _segment_data(folder, reader, searcher.doc_count_all())
        self.n = self.data.n
        self._live = self._published = None

    def _ids_mask(self, ids) -> np.ndarray:
        mask = np.zeros(self.n, dtype=bool)
        ids = np.fromiter(ids, dtype=np.int64)
        if ids.size:
            mask[ids] = True
        return mask

    def term(self, name: str, token: str) -> np.ndarray:
        data = self.data
        key = (name, token)
        with data.lock:
            mask = data.masks.get(key)
            if mask is not None:
                data.masks.move_to_end(key)
                return mask
        if ranking.is_prefix([token]):
            mask = np.zeros(self.n, dtype=bool)
            for term in self.reader.expand_prefix(name, token):
                text = term.decode("utf-8") if isinstance(term, bytes) else term
                mask |= self._postings(name, text)
        else:
            mask = self._postings(name, token)
        with data.lock:
            data.masks[key] = mask
            while len(data.masks) > data.max_masks:
                data.masks.popitem(last=False)
        return mask

    def _postings(self, name: str, token: str) -> np.ndarray:
        try:
            matcher = self.reader.postings(name, token)
        except Exception:  # TermNotFound: no document of this segment holds it
            return np.zeros(self.n, dtype=bool)
        if type(matcher) is not W3LeafMatcher:
            return self._ids_mask(matcher.all_ids())
        # A block of ids at a time instead of one Python call per posting (all_ids): 2.3
        # times faster on common bigrams at 20,000 cases. Whoosh-reloaded 2.7.5's own
        # block reading; any other matcher takes the path above.
        mask = np.zeros(self.n, dtype=bool)
        while matcher.is_active():
            matcher._read_ids()
            mask[np.asarray(matcher._ids[matcher._i:], dtype=np.int64)] = True
            matcher._next_block()
        return mask

    def doc_frequency(self, name: str, token: str) -> int:
        """Whoosh's count of the segment's documents holding ``token`` in ``name`` (deleted
        ones included), remembered for the segment's life."""
        known = self.data.frequencies  # shared by the searching threads: one lookup
        frequency = known.get((name, token))
        if frequency is None:
            if len(known) > 100_000:
                known.clear()
            frequency = known[(name, token)] = self.reader.doc_frequency(name, token)
        return frequency

    def word(self, name: str, tokens: list[str]) -> np.ndarray:
        mask = self.term(name, tokens[0])
        for token in tokens[1:]:
            mask = mask & self.term(name, token)
        return mask

    def type_mask(self, incident_type: str) -> np.ndarray:
        return self.data.code_mask("incident_type", incident_type)

    def phrase(self, tokens: list[str]) -> np.ndarray:
        """Documents with every bigram of a quoted phrase in one field (the index keeps no
        positions, so the order of the bigrams is not checked)."""
        mask = np.zeros(self.n, dtype=bool)
        for name in ranking.FIELD_WEIGHTS:
            mask |= self.word(name, tokens)
        return mask

    def live(self) -> np.ndarray:
        """Documents not deleted (a view lives for one search, so this is computed once)."""
        if self._live is None:
            self._live = np.ones(self.n, dtype=bool)
            if self.reader.has_deletions():
                self._live[np.fromiter(self.reader.segment().deleted_docs(), dtype=np.int64)] = False
        return self._live

    def published(self) -> np.ndarray:
        """Live published documents: what every user may read, and all word weights count."""
        if self._published is None:
            self._published = self.live() & self.term("status", "published")
        return self._published

    def allowed(self, user, filters: dict) -> np.ndarray:
        """Live documents that the index says ``user`` may read, under ``filters``."""
        mask = self.live().copy()
        visible = self.term("status", "published")
        if user is not None:
            if user.user_id is not None:
                visible = visible | self.term("reporter", str(user.user_id))
            if user.has_role("reviewer"):
                visible = visible | self.term("status", "submitted") | self.term("status", "approved")
            elif user.has_role("manager"):
                visible = visible | (self.term("department_id", str(user.department_id)) & (
                    self.term("status", "submitted") | self.term("status", "approved")))
        mask &= visible
        for name, value in filters.items():
            mask &= (self.term("items", value) if name == "items"
                     else self.data.code_mask(name, value))
        return mask

    def facet_counts(self, matched: np.ndarray) -> dict[str, dict[str, int]]:
        counts = {}
        for name in SINGLE_VALUED:
            tally = np.bincount(self.data.codes[name][matched], minlength=len(self.data.values[name]))
            counts[name] = {value: int(count) for value, count
                            in zip(self.data.values[name], tally) if count and value}
        items = {}
        for term in self.reader.lexicon("items"):
            code = term.decode("utf-8") if isinstance(term, bytes) else term
            count = int(np.count_nonzero(self.term("items", code) & matched))
            if count:
                items[code] = count
        counts["items"] = items
        return counts


@dataclass
class SearchResult:
    total: int
    hits: list[dict]
    facets: dict[str, dict[str, int]]
    partial: bool
    notices: list[str]
    terms: frozenset
    # (words as typed, words the vocabulary added): 「『なくした』は『紛失・遺失』も含めて…」
    expansions: list = ()
    vocabulary_version: int | None = None  # None: searched only the typed words (exact)
    # Of ``total``, the cases only feedback found (no typed word in them); listed after the
    # others, each hit flagged ``related``.
    related: int = 0


_cache: "OrderedDict[tuple, tuple]" = OrderedDict()
_cache_lock = threading.Lock()


def _generation_key(ix) -> tuple | None:
    """What tells the index's newest generation from any other, for the result cache; None
    if that cannot be told now (a commit just replaced it: the search is not cached).

    Not the folder and generation number alone: two indexes can share both — a test's
    copy, and an index rebuilt by another process (``flask reindex`` while the server
    runs) is swapped in under the same folder name and counts its generations from the
    start again, so this process answered from the old index's results. Every commit
    writes a new table of contents: its inode and time tell the two apart."""
    generation = ix.latest_generation()
    try:
        toc = os.stat(os.path.join(ix.storage.folder, TOC._filename(ix.indexname, generation)))
    except OSError:
        return None
    return (ix.storage.folder, generation, toc.st_ino, toc.st_mtime_ns)


def _visibility_key(user) -> tuple:
    if user.has_role("reviewer"):
        return ("reviewer", user.user_id)
    if user.has_role("manager"):
        return ("manager", user.user_id, user.department_id)
    return ("staff", user.user_id)


def _idf(views):
    """Word weights counted over the published documents only.

    Counting over the whole index would let drafts and other departments' reports move
    the scores (and the order) of the hits a user sees: saving a draft with or without a
    word would be visible to everyone who searches for it (issue #11, item 7).
    """
    total = max(sum(int(np.count_nonzero(view.published())) for view in views), 1)

    def frequency(name: str, token: str) -> int:
        return sum(int(np.count_nonzero(view.term(name, token) & view.published()))
                   for view in views)

    def weight(tokens):
        if ranking.is_prefix(tokens):
            return ranking.idf(total, total // 2)  # a one-character word matches very many
        return ranking.idf(total, min(max(frequency(name, token)
                                          for name in ranking.FIELD_WEIGHTS) for token in tokens))
    return weight


def _rough_idf(views):
    """A word weight from the index's own term counts: no postings are read, but drafts
    and deleted documents count too. Only to choose which feedback bigrams ``_idf`` weighs
    (kb.ranking.feedback), never as a weight."""
    total = max(sum(view.reader.doc_count_all() for view in views), 1)

    def weight(token: str) -> float:
        return ranking.idf(total, max(sum(view.doc_frequency(name, token) for view in views)
                                      for name in ROUGH_IDF_FIELDS))
    return weight


# The fields whose counts ``_rough_idf`` reads: the body holds the summary, where nearly
# every title word is too, and one field costs a quarter of four (feedback's picking was
# most of a search's time at 20,000 cases).
ROUGH_IDF_FIELDS = ("body",)


def search_cases(ix, db, user, text: str, *, filters: dict | None = None, sort: str = "relevance",
                 page: int = 1, page_size: int = 20, time_limit: float = TIME_LIMIT,
                 exact: bool = False) -> SearchResult:
    """One page of the cases matching ``text`` that ``user`` may read, with facet counts.

    ``filters`` maps facet names to a value. ``sort`` is "relevance" or "date" (an empty
    query lists by date). Query words also find the words the office's vocabulary gives
    for them (kb/vocabulary.py, its current version), and feedback from the best cases adds
    related ones after them (hits flagged ``related``), unless ``exact``. When the time
    limit is reached the segments searched so far give the results, flagged ``partial``.
    The database has the last word on what the user may read: hits it refuses are dropped.
    """
    filters = {k: v for k, v in (filters or {}).items() if k in FACETS and v}
    words = None if exact else vocabulary.current(db)
    # The vocabulary's version is part of the key: a change is used at once.
    generation = _generation_key(ix)
    key = (generation, text, tuple(sorted(filters.items())), sort, page, page_size,
           _visibility_key(user), words and words.version)
    cached = None
    if generation is not None:
        with _cache_lock:
            cached = _cache.get(key)
            if cached is not None:
                _cache.move_to_end(key)
    if cached is None:
        try:
            cached = _run(ix, text, user, filters, sort, page, page_size, time_limit,
                          vocabulary=words, texts=None if exact else _texts_of(db, user))
        except Exception as error:  # noqa: BLE001 - a damaged index file: degrade, rebuild
            _unreadable(ix, error)
            return _fallback(db, user, text, filters, page, page_size)
        if not cached[3] and generation is not None:  # partial results are not worth keeping
            with _cache_lock:
                _cache[key] = cached
                while len(_cache) > CACHE_SIZE:
                    _cache.popitem(last=False)
    total, ranked, facets, partial, terms, notices, expansions, related = cached
    rows = cases.rows_for_results(db, user, [case_id for case_id, _, _ in ranked])
    hits = []
    for case_id, score, only_feedback in ranked:
        if case_id in rows:
            row = rows[case_id]
            row["score"] = score
            row["related"] = only_feedback
            row["snippet"] = ranking.snippet(row.get("summary") or "", terms)
            hits.append(row)
    notices = list(notices)
    if partial:
        notices.append("検索に時間がかかったため、途中までの結果を表示しています。"
                       "言葉を増やすか、絞り込みを使ってください。")
    return SearchResult(total, hits, facets, partial, notices, terms, expansions,
                        words.version if words is not None else None, related)


# Subtracted from the score of a case only feedback found: more than any lift it can get.
FEEDBACK_TIER = 1000.0


def _texts_of(db, user):
    """For feedback: the title and summary of the cases (ids) that ``user`` may read."""
    return lambda case_ids: cases.texts_for_feedback(db, user, case_ids)


def _run(ix, text, user, filters, sort, page, page_size, time_limit, exclude=None, plan=None,
         vocabulary=None, texts=None):
    with open_searcher(ix) as searcher:
        return _rank(ix, searcher, text, user, filters, sort, page, page_size, time_limit,
                     exclude, plan, vocabulary, texts)


def _rank(ix, searcher, text, user, filters, sort, page, page_size, time_limit, exclude, plan,
          vocabulary=None, texts=None):
    started = time.perf_counter()
    start = (max(page, 1) - 1) * page_size
    want = start + page_size
    views = [_View(reader, offset, searcher, ix.storage.folder)
             for reader, offset in _segment_readers(searcher)]
    feedback = plan is None and texts is not None  # not for similar cases, nor exact
    plan = plan or ranking.plan_query(text, _idf(views), vocabulary)
    by_date = sort == "date" or plan.empty
    candidates, facets, total, related_total, partial = [], {}, 0, 0, False
    scored = []
    for view in views:
        if time.perf_counter() - started > time_limit:
            partial = True
            break
        allowed = view.allowed(user, filters)
        if exclude is not None:
            allowed &= ~view.term("case_id", str(exclude))
        scored.append((view, *ranking.score_segment(plan, view, allowed), allowed))
    related = [None] * len(scored)
    if feedback and not by_date and ranking.wants_feedback(plan):
        related = _feed_back(plan, scored, views, texts)
    for (view, scores, matched, _), only_feedback in zip(scored, related):
        total += int(np.count_nonzero(matched))
        if only_feedback is not None:
            related_total += int(np.count_nonzero(only_feedback))
        for name, counts in view.facet_counts(matched).items():
            merged = facets.setdefault(name, {})
            for value, count in counts.items():
                merged[value] = merged.get(value, 0) + count
        for docnum in ranking.top(scores, view.data.dates, matched, want, by_date):
            candidates.append((float(scores[docnum]), int(view.data.dates[docnum]),
                               int(view.data.case_ids[docnum]),
                               only_feedback is not None and bool(only_feedback[docnum])))
    if by_date:
        candidates.sort(key=lambda c: (-c[1], -c[0]))
    else:
        candidates.sort(key=lambda c: (-c[0], -c[1]))
    ranked = [(case_id, round(score + FEEDBACK_TIER * only_feedback, 4), only_feedback)
              for score, _, case_id, only_feedback in candidates[start:want]]
    for name in FACETS:
        facets.setdefault(name, {})
    return (total, ranked, facets, partial, plan.terms, plan.notices, plan.expansions,
            related_total)


def _feed_back(plan, scored, views, texts) -> list:
    """Pseudo-relevance feedback (kb.ranking.feedback), in place: the first ranking's best
    cases across all segments give the types and words that lift the other allowed
    cases, and may add cases that hold none of the typed words. Returns, per segment, the
    mask of those added cases (None where feedback added nothing); they rank after every
    case holding a typed word, whatever their lift."""
    best = []
    for view, scores, matched, _ in scored:
        for docnum in ranking.top(scores, view.data.dates, matched, ranking.FEEDBACK_DOCS, False):
            best.append((float(scores[docnum]), int(view.data.dates[docnum]), view, int(docnum)))
    best.sort(key=lambda c: (-c[0], -c[1]))
    best = best[:ranking.FEEDBACK_DOCS]
    if not best:
        return [None] * len(scored)
    types = [view.data.values["incident_type"][view.data.codes["incident_type"][docnum]]
             for _, _, view, docnum in best]
    ids = [int(view.data.case_ids[docnum]) for _, _, view, docnum in best]
    found = texts(ids) if texts is not None else {}
    added = ranking.feedback(plan, types, [found[i] for i in ids if i in found], _idf(views),
                             _rough_idf(views))
    related = []
    for view, scores, matched, allowed in scored:
        extra = ranking.score_feedback(added, view) * allowed
        only_feedback = (extra > 0) & ~matched
        scores += extra
        # Below every typed-word match: a case the searcher's words are in comes first.
        scores[only_feedback] -= np.float32(FEEDBACK_TIER)
        matched |= only_feedback
        related.append(only_feedback)
    return related


def _key_terms(searcher, views, text: str, number: int) -> list[tuple[str, float]]:
    """The ``number`` most distinctive body bigrams of ``text`` with normalised weights.

    Whoosh's ``key_terms_from_text`` (the Bo1 model) done over the published documents only:
    Whoosh counts every document, and then a draft holding a word would change which
    similar cases everyone is shown. Each bigram counts once (the field keeps presence)."""
    total = sum(int(np.count_nonzero(view.published())) for view in views)
    if not total:
        return []
    field = searcher.schema["body"]
    scored, best = [], 0.0
    for token in sorted({field.from_bytes(term) for term, _, _, _ in field.index(text)}):
        # The exact bigram: a one-character token is not widened to a prefix here.
        frequency = sum(int(np.count_nonzero(view._postings("body", token) & view.published()))
                        for view in views)
        if not frequency:
            continue
        share = frequency / total
        score = math.log2((1.0 + share) / share) + math.log2(1.0 + share)
        best = max(best, score)
        scored.append((score, token))
    if not scored:
        return []
    share = best / total
    norm = (best * math.log((1.0 + share) / share) + math.log(1.0 + share)) / math.log(2.0)
    scored.sort(key=lambda pair: (-pair[0], pair[1]))
    return [(token, score / norm) for score, token in scored[:number]]


def similar_cases(ix, db, user, *, text: str, exclude: int | None = None, limit: int = 5,
                  incident_type: str | None = None) -> list[dict]:
    """Published cases most like ``text`` (a case's title and summary, or a draft being
    typed): its most distinctive bigrams, weighted, plus a lift for the same type."""
    if not text or not text.strip():
        return []
    try:
        ranked = _similar(ix, text, exclude, limit, incident_type)
    except Exception as error:  # noqa: BLE001 - a damaged index: no panel, not a broken page
        _unreadable(ix, error)
        return []
    rows = cases.rows_for_results(db, user, [case_id for case_id, _, _ in ranked])
    return [dict(rows[case_id], score=score) for case_id, score, _ in ranked if case_id in rows]


def _similar(ix, text, exclude, limit, incident_type) -> list[tuple[int, float]]:
    with open_searcher(ix) as searcher:
        views = [_View(reader, offset, searcher, ix.storage.folder)
                 for reader, offset in _segment_readers(searcher)]
        keys = _key_terms(searcher, views, text[:4000], 24)
        plan = ranking.Plan(
            words=[ranking.Word([term], float(weight) * 4.0, False) for term, weight in keys],
            hinted_types=[incident_type] if incident_type else [],
            terms=frozenset(term for term, _ in keys))
        if not plan.words:
            return []
        # Drawn from the published cases only, whoever asks.
        return _rank(ix, searcher, "", users.READER, {}, "relevance", 1, limit,
                     TIME_LIMIT, exclude, plan)[1]


# --- upkeep ---------------------------------------------------------------------------

def repair(db, data_dir) -> dict[str, list[int]]:
    """Heal whatever drift there is between the index and the database; return it."""
    ix = get_index(data_dir)
    drift = check(ix, db)
    if any(drift.values()):
        log.warning("search index drift repaired: %s",
                    {kind: len(ids) for kind, ids in drift.items()})
        heal(ix, db, drift)
    return drift


def warm(data_dir) -> None:
    """Load every segment's columns now, so the first search after start is not the slow one."""
    ix = get_index(data_dir)
    with open_searcher(ix) as searcher:
        for reader, _ in _segment_readers(searcher):
            _segment_data(ix.storage.folder, reader, searcher.doc_count_all())


def ensure_index(app, db) -> bool:
    """Rebuild a missing or old-schema index from SQLite; True if it was rebuilt."""
    if is_current(app.config["DATA_DIR"]) or not db["cases"].exists():
        return False
    started = time.perf_counter()
    count = rebuild(db, app.config["DATA_DIR"])
    log.warning("search index was missing or of an old schema: rebuilt %d cases in %.1f s",
                count, time.perf_counter() - started)
    return True
