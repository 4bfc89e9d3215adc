"""Mail: the outbox, the mail templates and the sender. The only module that opens SMTP.

Every mail is first a row of ``outbox``, written by ``queue_mail`` inside the transaction
of the event that causes it: an event that rolls back queues nothing, and one that commits
has its mail safe in SQLite whatever the mail server does. ``send_due`` (called every
minute by the scheduler of `serve`, or by `flask --app wsgi send-mail`) sends the rows
whose time has come, over one SMTP connection per run.

Delivery is **at most once per row**. Before the SMTP call a row is claimed (status
``sending``) in its own short transaction, and its outcome is written the moment the server
has answered. Should the process die between the two, the row stays ``sending``: it is
never sent again by itself, because the server may have taken it. Once the claim is older
than ``SENDING_LEASE`` the row is marked failed, "may or may not have arrived", and shows
on the outbox page, where a reviewer may requeue it (「再送する」). We chose this over
at-least-once because a reminder arriving twice (or 3,500 invitations twice) costs the
office more trust than one reminder in doubt, which is visible and one click away. SMTP
itself leaves one gap no client can close: a connection lost after the message's data
went out but before the server's reply reads as a temporary failure and the mail is tried
again; its Message-ID is the same on every attempt, so a mail system can tell it is one.

What the server says decides the rest: accepted → ``sent``; a temporary refusal (4xx, the
server down or unreachable, a timeout, a refused sign-in) → back to ``queued`` with a
wait of 1, 2, 4 … minutes (at most ``BACKOFF_CAP_MINUTES``) and, after
``MAIL_MAX_ATTEMPTS`` attempts, ``failed``; a permanent refusal (5xx for the recipient, an
address that is not one) → ``failed`` with the server's words. With no ``SMTP_HOST`` mail
is off: rows stay queued and visible, and go out once a server is configured.
"""

import hashlib
import logging
import re
import smtplib
import ssl
from datetime import datetime, timedelta, timezone
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from urllib.parse import urlencode

import jinja2
from flask import current_app, has_app_context

from kb import audit, config, dates
from kb.db import transaction
from kb.exceptions import Invalid, NotFound
from kb.roles import require_role

log = logging.getLogger(__name__)

STATUSES = ("queued", "sending", "sent", "failed")
STATUS_LABELS = {"queued": "送信待ち", "sending": "送信中", "sent": "送信済み", "failed": "送信失敗"}
# How the outbox page names the kinds its callers use (another kind shows as written).
KIND_LABELS = {"campaign_invitation": "自己点検の案内", "campaign_reminder": "自己点検の督促",
               "campaign_digest": "所属長への未回答者一覧", "campaign_summary": "自己点検の結果",
               "test": "テストメール"}
TEMPLATE_DIR = config.PROJECT_DIR / "templates" / "mail"
BACKOFF_CAP_MINUTES = 60
# Rows claimed at a time: a stop (Ctrl+C, SIGTERM) hands the unsent rest of a chunk back.
CLAIM_CHUNK = 50
# A claim older than this was left by a process that died mid-send (a live sender records
# each outcome within one SMTP timeout).
SENDING_LEASE = timedelta(minutes=15)
# Most mails one run sends; the rest wait for the next run, a minute later.
SEND_LIMIT = 2000
PAGE_SIZE = 100
INTERRUPTED = ("送信の途中で処理が止まったため、届いたかどうか分かりません。"
               "受信者に届いていないことを確かめてから再送してください。")

SENT, TEMPORARY, PERMANENT, DISCONNECTED = "sent", "temporary", "permanent", "disconnected"


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(timezone.utc)


def local_time(value: str | None) -> str:
    """An outbox timestamp (UTC ISO-8601) as the office's local "YYYY-MM-DD HH:MM"."""
    if not value:
        return ""
    return dates.in_office_time(datetime.fromisoformat(value)).strftime("%Y-%m-%d %H:%M")


# RFC 2606 reserves this top-level domain as "sure to be invalid": the demo roster's
# invented people have their addresses there (kb/demo_roster.py), so that a demo
# installation with a real SMTP server configured never mails anyone it made up.
UNDELIVERABLE_TLD = ".invalid"


def is_deliverable(address: str | None) -> bool:
    """False for no address and for one in the reserved ``.invalid`` domain (the demo
    roster's): no mail is ever queued to those."""
    address = (address or "").strip()
    return bool(address) and not address.lower().rstrip(".").endswith(UNDELIVERABLE_TLD)


def one_line(text: str | None) -> str:
    """``text`` with its line breaks and other control characters turned into single
    spaces: what a mail header (Subject, a display name) may hold. Roster names can carry
    a spreadsheet cell's Alt+Enter; the email package refuses CR/LF in a header, which
    would fail the mail."""
    return _CONTROLS.sub(" ", text or "").strip()


_CONTROLS = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]+")


def is_enabled(settings) -> bool:
    """True when an SMTP server is configured; otherwise mails wait in the outbox."""
    return bool((settings.get("SMTP_HOST") or "").strip())


# --- templates ----------------------------------------------------------------------------

_environment: jinja2.Environment | None = None


def _templates() -> jinja2.Environment:
    global _environment
    if _environment is None:
        # Plain text: nothing to escape. StrictUndefined: a missing value fails the caller's
        # transaction rather than mailing 3,500 people an empty name.
        _environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), autoescape=False,
            undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
            keep_trailing_newline=True)
    return _environment


def link(base_url: str, path: str, **query) -> str:
    """An absolute link for a mail: ``base_url`` + a path of this app (+ a query string)."""
    if not path.startswith("/"):
        raise ValueError(f"a mail link is a path of this app, not {path!r}")
    return base_url.rstrip("/") + path + (f"?{urlencode(query)}" if query else "")


def render_mail(template: str, context: dict, *, base_url: str) -> tuple[str, str]:
    """(subject, body) of ``templates/mail/<template>.txt`` rendered with ``context``.

    The first line is the subject, the rest (after blank lines) the body. Needs no request:
    the template builds links with ``url(path, **query)`` on ``base_url``
    (``PUBLIC_URL``), and gets ``base_url`` itself.
    """
    text = _templates().get_template(f"{template}.txt").render(
        **context, base_url=base_url.rstrip("/"),
        url=lambda path, **query: link(base_url, path, **query))
    subject, _, body = text.replace("\r\n", "\n").partition("\n")
    subject = subject.strip()
    if not subject:
        raise ValueError(f"mail template {template!r} has no subject line")
    return subject, body.lstrip("\n").rstrip() + "\n"


# --- queueing -----------------------------------------------------------------------------

def queue_mail(db, *, kind: str, dedupe_key: str, template: str, context: dict | None = None,
               to_user_id: int | None = None, to_address: str | None = None,
               settings=None, now: datetime | None = None) -> int | None:
    """Write one mail to the outbox in the caller's transaction; return its ``mail_id``, or
    None when a mail with ``dedupe_key`` exists already (whatever became of it) or the
    address is in the reserved ``.invalid`` domain (``is_deliverable``: the demo roster's
    invented people), which is never mailed.

    Must run inside ``kb.db.transaction`` and never commits: the mail is kept or dropped
    with the event that causes it (RuntimeError outside a transaction). Give either
    ``to_user_id`` (their roster address; the template gets their ``name``) or
    ``to_address``. A person without an address raises Invalid — the caller lists such
    people for paper — and an unknown user NotFound; an address that is not one is queued
    and fails at sending, visibly, so one bad roster entry never blocks a whole campaign.
    ``settings`` (PUBLIC_URL) default to the app's, or the environment's outside an app.
    """
    if not db.conn.in_transaction:
        raise RuntimeError("queue_mail must run inside kb.db.transaction (it never commits)")
    if db.execute("SELECT 1 FROM outbox WHERE dedupe_key = ?", [dedupe_key]).fetchone():
        return None
    if (to_user_id is None) == (to_address is None):
        raise TypeError("give exactly one of to_user_id and to_address")
    name = ""
    if to_user_id is not None:
        row = db.execute("SELECT email, display_name FROM users WHERE user_id = ?",
                         [to_user_id]).fetchone()
        if row is None:
            raise NotFound(f"user {to_user_id}")
        to_address, name = row
        name = one_line(name)
    to_address = (to_address or "").strip()
    if not to_address:
        raise Invalid({"to_address": ["メールアドレスが登録されていないため、メールを送れません。"]})
    if not is_deliverable(to_address):
        return None
    settings = settings if settings is not None else _settings()
    subject, body = render_mail(template, {"name": name, **(context or {})},
                                base_url=settings["PUBLIC_URL"])
    moment = _iso(_now(now))
    cursor = db.execute(
        "INSERT INTO outbox (kind, dedupe_key, to_address, to_name, to_user_id, subject,"
        " body_text, created_at, status, attempts, next_attempt_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'queued', 0, ?)",
        [kind, dedupe_key, to_address, name, to_user_id, subject, body, moment, moment])
    return cursor.lastrowid


def _settings():
    if has_app_context():
        return current_app.config
    return {**config.defaults(), **config.from_environment()}


# --- the message --------------------------------------------------------------------------

def build_message(row: dict, settings, now: datetime | None = None) -> EmailMessage:
    """The RFC 5322 message of an outbox row: UTF-8 body, RFC 2047 headers (raw UTF-8 only
    when an address itself is not ASCII, which needs a server offering SMTPUTF8), a From
    with its display name, Date, and a Message-ID that stays the same on every attempt.

    Raises ValueError (or IndexError) for an address that is not one."""
    from_name, from_address = parseaddr(settings["MAIL_FROM"])
    sender = Address(display_name=from_name, addr_spec=from_address)
    recipient = Address(display_name=one_line(row.get("to_name")), addr_spec=row["to_address"])
    international = not (sender.addr_spec.isascii() and recipient.addr_spec.isascii())
    message = EmailMessage(policy=policy.SMTPUTF8 if international else policy.SMTP)
    message["Subject"] = one_line(row["subject"])
    message["From"] = sender
    message["To"] = recipient
    message["Date"] = format_datetime(dates.in_office_time(_now(now)))
    token = hashlib.sha256(f"{row['dedupe_key']}\0{row['created_at']}".encode()).hexdigest()[:12]
    message["Message-ID"] = f"<hiyari-kb.{row['mail_id']}.{token}@{sender.domain or 'localhost'}>"
    # RFC 3834: no out-of-office replies to the outbox.
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(row["body_text"], charset="utf-8")
    if row.get("body_html"):
        message.add_alternative(row["body_html"], subtype="html", charset="utf-8")
    return message


# --- sending ------------------------------------------------------------------------------

def send_due(db, settings, now: datetime | None = None, limit: int = SEND_LIMIT,
             stop=None) -> dict:
    """Send the queued mails whose ``next_attempt_at`` has come (at most ``limit``), over
    one SMTP connection; return what happened:
    ``{"enabled", "sent", "retrying", "failed", "interrupted", "queued"}`` — lists of
    ``{"mail_id", "kind", "to_address", "subject"}`` (with ``"error"``, and for retrying
    ``"next_attempt_at"``), and the number of rows still queued.

    Safe to run at the same time in several threads or processes: each row is claimed by
    one of them. ``stop`` (a threading.Event) ends the run after the current mail, handing
    the unsent claimed rows back. Claims older than ``SENDING_LEASE`` are marked failed
    (see the module docstring). Mail off (no ``SMTP_HOST``): nothing is sent or changed.
    """
    now = _now(now)
    report = {"enabled": is_enabled(settings), "sent": [], "retrying": [], "failed": [],
              "interrupted": _fail_abandoned_claims(db, now)}
    if report["enabled"] and _has_due(db, now):
        _send_batch(db, settings, now, limit, stop, report)
    report["queued"] = db.execute("SELECT count(*) FROM outbox WHERE status = 'queued'").fetchone()[0]
    return report


def _send_batch(db, settings, now, limit, stop, report) -> None:
    max_attempts = int(settings["MAIL_MAX_ATTEMPTS"])
    try:
        smtp = _connect(settings)
    except OSError as error:  # smtplib's and ssl's errors are OSErrors too
        # The mails are not at fault: every due one waits (and counts an attempt).
        message = f"メールサーバーに接続できません（{_describe(error)}）"
        rows = _claim(db, now, limit)
        with transaction(db):  # one commit for them all, each row its own savepoint
            for row in rows:
                _record(db, row, TEMPORARY, message, now, max_attempts, report)
        return
    try:
        remaining = limit
        while remaining > 0:
            rows = _claim(db, now, min(CLAIM_CHUNK, remaining))
            if not rows:
                return
            remaining -= len(rows)
            for index, row in enumerate(rows):
                if stop is not None and stop.is_set():
                    _release(db, rows[index:])
                    return
                outcome, error = _send_one(smtp, row, settings, now)
                if outcome == DISCONNECTED:
                    _record(db, row, TEMPORARY, error, now, max_attempts, report)
                    _release(db, rows[index + 1:])
                    return
                _record(db, row, outcome, error, now, max_attempts, report)
    finally:
        try:
            smtp.quit()
        except OSError:
            smtp.close()


def _connect(settings) -> smtplib.SMTP:
    smtp = smtplib.SMTP(settings["SMTP_HOST"].strip(), int(settings["SMTP_PORT"]),
                        timeout=float(settings["SMTP_TIMEOUT"]))
    try:
        smtp.ehlo()
        if settings["SMTP_STARTTLS"]:
            context = ssl.create_default_context(cafile=settings["SMTP_CA_FILE"] or None)
            smtp.starttls(context=context)
            smtp.ehlo()
        if settings["SMTP_USER"]:
            smtp.login(settings["SMTP_USER"], settings["SMTP_PASSWORD"])
    except BaseException:
        smtp.close()
        raise
    return smtp


def _send_one(smtp, row: dict, settings, now) -> tuple[str, str]:
    try:
        message = build_message(row, settings, now)
    except (ValueError, IndexError) as error:
        return PERMANENT, f"メールアドレスが正しくありません（{row['to_address']}: {error}）"
    try:
        smtp.send_message(message)
    except smtplib.SMTPRecipientsRefused as error:
        code, text = next(iter(error.recipients.values()))
        return _by_code(code, text, "宛先を受け付けられませんでした")
    except smtplib.SMTPResponseException as error:  # sender refused, data refused, …
        return _by_code(error.smtp_code, error.smtp_error, "メールサーバーに断られました")
    except smtplib.SMTPNotSupportedError as error:
        return PERMANENT, f"メールサーバーが日本語のアドレスに対応していません（{error}）"
    except OSError as error:  # disconnected, timed out, reset
        return DISCONNECTED, f"送信中にメールサーバーとの接続が切れました（{_describe(error)}）"
    return SENT, ""


def _by_code(code: int, text, what: str) -> tuple[str, str]:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return (TEMPORARY if 400 <= code < 500 else PERMANENT), f"{what}（{code} {text}）"


def _describe(error: BaseException) -> str:
    if isinstance(error, smtplib.SMTPResponseException):
        text = error.smtp_error
        text = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        return f"{error.smtp_code} {text}"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def backoff(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failed attempt: 1, 2, 4 … minutes, capped."""
    return timedelta(minutes=min(2 ** max(attempts - 1, 0), BACKOFF_CAP_MINUTES))


ROW_COLUMNS = ("mail_id, kind, dedupe_key, to_address, to_name, subject, body_text, body_html,"
               " created_at, attempts")


def _has_due(db, now) -> bool:
    return db.execute("SELECT 1 FROM outbox WHERE status = 'queued' AND next_attempt_at <= ?"
                      " LIMIT 1", [_iso(now)]).fetchone() is not None


def _claim(db, now, limit: int) -> list[dict]:
    """Mark up to ``limit`` due rows as being sent (one attempt more) and return them.

    BEGIN IMMEDIATE makes a second sender wait, then find them taken."""
    with transaction(db):
        cursor = db.execute(
            "UPDATE outbox SET status = 'sending', claimed_at = ?, attempts = attempts + 1"
            " WHERE mail_id IN (SELECT mail_id FROM outbox WHERE status = 'queued'"
            " AND next_attempt_at <= ? ORDER BY next_attempt_at, mail_id LIMIT ?)"
            f" RETURNING {ROW_COLUMNS}", [_iso(now), _iso(now), limit])
        columns = [column[0] for column in cursor.description]
        rows = [dict(zip(columns, values)) for values in cursor.fetchall()]
    return sorted(rows, key=lambda row: row["mail_id"])


def _record(db, row, outcome, error, now, max_attempts, report) -> None:
    entry = {key: row[key] for key in ("mail_id", "kind", "to_address", "subject")}
    with transaction(db):
        if outcome == SENT:
            db.execute("UPDATE outbox SET status = 'sent', sent_at = ?, claimed_at = NULL,"
                       " last_error = '' WHERE mail_id = ?", [_iso(now), row["mail_id"]])
            report["sent"].append(entry)
            return
        if outcome == TEMPORARY and row["attempts"] < max_attempts:
            next_at = _iso(now + backoff(row["attempts"]))
            db.execute("UPDATE outbox SET status = 'queued', claimed_at = NULL, last_error = ?,"
                       " next_attempt_at = ? WHERE mail_id = ?", [error, next_at, row["mail_id"]])
            report["retrying"].append({**entry, "error": error, "next_attempt_at": next_at})
            return
        if outcome == TEMPORARY:
            error = f"{error} ― {row['attempts']}回試みても送れなかったため、送信をやめました。"
        db.execute("UPDATE outbox SET status = 'failed', claimed_at = NULL, last_error = ?"
                   " WHERE mail_id = ?", [error, row["mail_id"]])
        report["failed"].append({**entry, "error": error})


def _release(db, rows) -> None:
    """Hand claimed rows that were not tried back to the queue, their attempt not counted."""
    if not rows:
        return
    with transaction(db):
        db.conn.executemany(
            "UPDATE outbox SET status = 'queued', claimed_at = NULL, attempts = attempts - 1"
            " WHERE mail_id = ? AND status = 'sending'", [(row["mail_id"],) for row in rows])


def _fail_abandoned_claims(db, now) -> list[dict]:
    if db.execute("SELECT 1 FROM outbox WHERE status = 'sending' AND claimed_at < ? LIMIT 1",
                  [_iso(now - SENDING_LEASE)]).fetchone() is None:
        return []  # the usual case: no write lock taken every minute for nothing
    with transaction(db):
        cursor = db.execute(
            "UPDATE outbox SET status = 'failed', claimed_at = NULL, last_error = ?"
            " WHERE status = 'sending' AND claimed_at < ?"
            " RETURNING mail_id, kind, to_address, subject",
            [INTERRUPTED, _iso(now - SENDING_LEASE)])
        rows = cursor.fetchall()
    return [{"mail_id": m, "kind": k, "to_address": a, "subject": s, "error": INTERRUPTED}
            for m, k, a, s in rows]


# --- the outbox page ----------------------------------------------------------------------

def list_outbox(db, actor, *, status: str = "", kind: str = "", page: int = 1,
                page_size: int = PAGE_SIZE) -> dict:
    """The outbox, newest first, for reviewers and admins (Forbidden for anyone else: a
    member of staff never sees anyone's mails). Unknown filter values are ignored.

    Returns ``{"mails", "total", "page", "pages", "counts" (by status), "kinds",
    "status", "kind"}``."""
    require_role(actor, "reviewer", "admin")
    kinds = [row[0] for row in db.execute("SELECT DISTINCT kind FROM outbox ORDER BY kind")]
    status = status if status in STATUSES else ""
    kind = kind if kind in kinds else ""
    where, params = [], []
    if status:
        where.append("status = ?")
        params.append(status)
    if kind:
        where.append("kind = ?")
        params.append(kind)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    total = db.execute(f"SELECT count(*) FROM outbox{clause}", params).fetchone()[0]
    pages = max(1, -(-total // page_size))
    page = min(max(1, page), pages)
    mails = list(db.query(
        "SELECT mail_id, kind, to_address, to_name, to_user_id, subject, created_at, status,"
        f" attempts, next_attempt_at, last_error, sent_at FROM outbox{clause}"
        " ORDER BY mail_id DESC LIMIT ? OFFSET ?", [*params, page_size, (page - 1) * page_size]))
    counts = dict.fromkeys(STATUSES, 0)
    counts.update(db.execute("SELECT status, count(*) FROM outbox GROUP BY status").fetchall())
    return {"mails": mails, "total": total, "page": page, "pages": pages, "counts": counts,
            "kinds": kinds, "status": status, "kind": kind}


def get_mail(db, actor, mail_id: int) -> dict:
    """One outbox row with its text, for reviewers and admins; NotFound if there is none."""
    require_role(actor, "reviewer", "admin")
    rows = list(db.query("SELECT * FROM outbox WHERE mail_id = ?", [mail_id]))
    if not rows:
        raise NotFound(f"mail {mail_id}")
    return rows[0]


def requeue_mail(db, actor, mail_id: int, now: datetime | None = None) -> bool:
    """Put a failed mail back in the queue to be sent at the next run, its attempts reset
    (reviewers and admins; audited). Returns False, changing nothing, when the mail is not
    failed (already requeued by someone else, or sent); NotFound if there is none."""
    require_role(actor, "reviewer", "admin")
    with transaction(db):
        row = db.execute("SELECT status, last_error, kind FROM outbox WHERE mail_id = ?",
                         [mail_id]).fetchone()
        if row is None:
            raise NotFound(f"mail {mail_id}")
        if row[0] != "failed":
            return False
        db.execute("UPDATE outbox SET status = 'queued', attempts = 0, claimed_at = NULL,"
                   " next_attempt_at = ? WHERE mail_id = ?", [_iso(_now(now)), mail_id])
        audit.record(db, actor, "mail_requeue", target=f"mail:{mail_id}",
                     detail={"kind": row[2], "last_error": row[1]})
    return True
