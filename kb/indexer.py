"""When the search index is written: after every commit that changed cases.

``kb.db`` calls the hook registered here with the ids of the cases a transaction changed,
once it has committed (never on rollback). By default the documents are written at once,
in the request. Under `flask --app wsgi serve` (``INDEX_IN_BACKGROUND``) they go to one
thread per index that writes them in batches, so that a save does not wait for the index
and concurrent saves share one index commit. Either way a failure to index never fails
the save: it is logged, and `reindex --check` or the next start repairs the drift.
"""

import logging
import threading
import time

from kb import search
from kb.db import database_path, open_db

log = logging.getLogger(__name__)


def init_app(app) -> None:
    app.extensions.setdefault("kb.after_commit", []).append(_index_after_commit(app))


def _index_after_commit(app):
    def hook(db, case_ids):
        data_dir, timeout = app.config["DATA_DIR"], app.config["INDEX_WRITER_TIMEOUT"]
        if app.config["INDEX_IN_BACKGROUND"]:
            _indexer(data_dir, timeout).put(case_ids)
            return
        try:
            search.index_cases(search.get_index(data_dir), db, case_ids, timeout=timeout)
        except Exception:  # the report is saved; `reindex --check` or the next start heals
            log.exception("could not update the search index for cases %s", sorted(case_ids))
    return hook


class _Indexer:
    """The background thread of one index. What is still queued when the process dies is
    repaired at the next start."""

    BATCH_WINDOW = 0.2  # seconds to gather more changes into one index commit

    def __init__(self, data_dir, timeout):
        self.data_dir, self.timeout = data_dir, timeout
        self.pending: set[int] = set()
        self.condition = threading.Condition()
        self.busy = False
        threading.Thread(target=self._run, name="kb-indexer", daemon=True).start()

    def put(self, case_ids) -> None:
        with self.condition:
            self.pending.update(case_ids)
            self.condition.notify_all()

    def flush(self, timeout: float = 30) -> bool:
        """Wait until everything queued so far is in the index."""
        deadline = time.monotonic() + timeout
        with self.condition:
            while self.pending or self.busy:
                if not self.condition.wait(deadline - time.monotonic()):
                    return False
        return True

    def _run(self) -> None:
        db = open_db(database_path(self.data_dir))
        while True:
            with self.condition:
                while not self.pending:
                    self.condition.wait()
            time.sleep(self.BATCH_WINDOW)
            with self.condition:
                batch, self.pending, self.busy = self.pending, set(), True
            try:
                search.index_cases(search.get_index(self.data_dir), db, batch,
                                   timeout=self.timeout)
            except Exception:
                log.exception("could not update the search index for cases %s", sorted(batch))
            finally:
                with self.condition:
                    self.busy = False
                    self.condition.notify_all()


_indexers: dict[str, _Indexer] = {}
_lock = threading.Lock()


def _indexer(data_dir, timeout) -> _Indexer:
    with _lock:
        key = str(search.index_path(data_dir))
        if key not in _indexers:
            _indexers[key] = _Indexer(data_dir, timeout)
        return _indexers[key]


def flush_all(timeout: float = 30) -> None:
    """Let every background indexer finish (at shutdown)."""
    for indexer in list(_indexers.values()):
        indexer.flush(timeout)


def flush(data_dir, timeout: float = 30) -> bool:
    """Wait for the background indexer of ``data_dir`` (if any) to catch up."""
    indexer = _indexers.get(str(search.index_path(data_dir)))
    return indexer.flush(timeout) if indexer else True
