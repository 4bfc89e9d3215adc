"""Due work: what the app does by the clock rather than on a request.

``run_due_work`` is the one core function for it. `flask --app wsgi serve` calls it every
minute from one background thread (``start``), and `flask --app wsgi send-mail --once` once,
for cron or a systemd timer; both may run at the same time. It runs every job of
``DUE_WORK`` in order, then sends the mail that is due (``kb.mail.send_due``), so a mail a
job queued goes out in the same run.

A job is ``job(db, settings, now) -> dict`` (a summary to print) and must be idempotent: it
is called every minute, possibly by two processes at once, and after any crash. Queue mail
with a ``dedupe_key`` naming the job's unit ("remind:<campaign>:<user>:<date>") and
``kb.mail.queue_mail`` makes a repeat a no-op. Register one with ``@register("name")``.
A job that raises is logged and reported; the others and the sending still run.
"""

import logging
import threading
from datetime import datetime

from flask import Flask, current_app

from kb import mail
from kb.db import get_db

log = logging.getLogger(__name__)

# (name, job) in the order they run; the sending of mail always comes after them.
DUE_WORK: list[tuple[str, object]] = []
INTERVAL_SECONDS = 60


def register(name: str):
    """Decorator adding ``job`` to ``DUE_WORK`` under ``name`` (again under the same name:
    replaced, so a module imported twice does not run its job twice)."""
    def add(job):
        DUE_WORK[:] = [(known, other) for known, other in DUE_WORK if known != name]
        DUE_WORK.append((name, job))
        return job
    return add


def run_due_work(app_or_db, now: datetime | None = None, *, settings=None, stop=None) -> dict:
    """Run every registered job, then send the mail that is due; return
    ``{"jobs": {name: summary or {"error": text}}, "mail": kb.mail.send_due's report}``.

    Takes the app (an app context is pushed, as in the scheduler thread) or a database
    (``settings`` then default to the current app's config). ``now`` defaults to the
    clock; ``stop`` (a threading.Event) cuts the sending short at a clean point.
    """
    if isinstance(app_or_db, Flask):
        with app_or_db.app_context():
            return run_due_work(get_db(), now, settings=app_or_db.config, stop=stop)
    db = app_or_db
    settings = settings if settings is not None else current_app.config
    jobs = {}
    for name, job in list(DUE_WORK):
        try:
            jobs[name] = job(db, settings, now)
        except Exception as error:  # one broken job must not stop the mail going out
            log.exception("due work %r failed", name)
            jobs[name] = {"error": f"{type(error).__name__}: {error}"}
    return {"jobs": jobs, "mail": mail.send_due(db, settings, now=now, stop=stop)}


class Scheduler:
    """One background thread calling ``run_due_work(app)`` every ``interval`` seconds until
    ``stop()``; ``on_result`` (if given) gets each run's result."""

    def __init__(self, app, interval: float = INTERVAL_SECONDS, on_result=None):
        self.app, self.interval, self.on_result = app, interval, on_result
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="kb-scheduler", daemon=True)

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                result = run_due_work(self.app, stop=self.stopping)
                if self.on_result is not None:
                    self.on_result(result)
            except Exception:  # e.g. the database locked for longer than the busy timeout
                log.exception("due work failed; trying again in %s s", self.interval)
            self.stopping.wait(self.interval)

    def stop(self, timeout: float = 30) -> None:
        """Let the current mail finish, hand the rest back to the queue, end the thread."""
        self.stopping.set()
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(timeout)


_running: list[Scheduler] = []


def start(app, interval: float = INTERVAL_SECONDS, on_result=None) -> Scheduler:
    """Start a scheduler thread for ``app`` and return it (``stop_all`` ends every one)."""
    scheduler = Scheduler(app, interval, on_result)
    _running.append(scheduler)
    scheduler.thread.start()
    return scheduler


def stop_all(timeout: float = 30) -> None:
    while _running:
        _running.pop().stop(timeout)
