"""Configuration defaults.

Every UPPER_CASE name below is a setting. Each can be overridden by an environment
variable of the same name prefixed with ``KB_`` (``KB_DATA_DIR``, ``KB_PORT`` …); a
mapping passed to ``create_app(test_config)`` wins over both. The README lists them
all, and a test keeps that list complete.
"""

import os
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent

# Instance folder: the SQLite database, the secret key file and (later) the index.
DATA_DIR = str(PROJECT_DIR / "data")
# Seed files loaded by `flask init`: departments, checklist, external cases.
SEED_DIR = str(PROJECT_DIR / "data" / "seed")
# Session signing key. When unset, read from DATA_DIR/secret_key; the placeholder is refused.
SECRET_KEY = "change-me"
# Failed sign-ins allowed per login id and, separately, per client address
# (Flask-Limiter syntax); successful sign-ins do not count.
LOGIN_RATE_LIMIT = "10 per minute"
# Reverse proxies in front of the app that append to X-Forwarded-For. 0: none, the client
# address is the connection's (the header is ignored, as anyone could forge it).
TRUSTED_PROXIES = 0
# Where Flask-Limiter keeps its counters; the in-memory default suits one process.
RATELIMIT_STORAGE_URI = "memory://"
# Send the session cookie over HTTPS only; turn on when served behind TLS.
SESSION_COOKIE_SECURE = False
# Hours a login stays valid without activity.
SESSION_HOURS = 8
# Address and port `flask serve` (and so scripts/run) listens on.
HOST = "127.0.0.1"
PORT = 5000
# Worker threads of the waitress server.
THREADS = 8
# Seconds a save waits for the search index's write lock before giving up (the save
# still succeeds; `reindex --check` or the next start repairs the index).
INDEX_WRITER_TIMEOUT = 10
# Write the search index from a background thread after each commit (saves do not wait
# for it, and concurrent saves share one index commit). `flask serve` turns this on.
INDEX_IN_BACKGROUND = False
# Cases per page in lists.
PAGE_SIZE = 30
# Largest request body (file uploads) accepted, in bytes; the importer itself takes 20 MB.
MAX_CONTENT_LENGTH = 20 * 2**20 + 2**16
# The 役職 → role table the roster import uses; empty means positions.yaml in SEED_DIR.
POSITIONS_FILE = ""
# Directory sign-in (kb/directory.py). Server URLs (ldap:// or ldaps://), separated by
# spaces or commas and tried in order; empty: no directory, local passwords only.
LDAP_URLS = ""
# Upgrade ldap:// connections with StartTLS before any password is sent.
LDAP_START_TLS = False
# CA certificate file (PEM) that the server's certificate must chain to; empty: the system's.
LDAP_CA_FILE = ""
# Bind DN (or user principal name) made from the login id: "uid={login},ou=people,dc=…"
# or "{login}@ward.local". Empty: search mode (LDAP_SEARCH_BASE + LDAP_SEARCH_FILTER).
LDAP_BIND_TEMPLATE = ""
# Where people are searched for (search mode, or to read LDAP_MATCH_ATTRIBUTE after a bind).
LDAP_SEARCH_BASE = ""
# Filter finding one person; {login} is replaced by the escaped login id.
LDAP_SEARCH_FILTER = "(uid={login})"
# Service account that searches (search mode); empty: an anonymous search.
LDAP_BIND_DN = ""
LDAP_BIND_PASSWORD = ""
# Directory attribute matched to our accounts (employeeID, employeeNumber, sAMAccountName …);
# empty: the login id as typed.
LDAP_MATCH_ATTRIBUTE = "employeeNumber"
# The users column it is matched to: "employee_number" (職員番号) or "login".
LDAP_MATCH_COLUMN = "employee_number"
# Seconds to connect to a directory server, and again for each answer it owes.
LDAP_TIMEOUT = 5
# Days a sign-in slip's one-time code stays valid (kb/slips.py).
SLIP_VALID_DAYS = 14
# Mail (kb/mail.py). The office's SMTP server; empty: mail off (mails are still queued and
# shown on the outbox page, nothing is sent).
SMTP_HOST = ""
SMTP_PORT = 25
# Upgrade the connection with STARTTLS before anything else is sent (a user and password
# are then sent only encrypted).
SMTP_STARTTLS = False
# CA certificate file (PEM) the server's certificate must chain to; empty: the system's.
SMTP_CA_FILE = ""
# Account to sign in to the SMTP server with; empty: no SMTP AUTH.
SMTP_USER = ""
SMTP_PASSWORD = ""
# Seconds to connect to the SMTP server, and again for each answer it owes.
SMTP_TIMEOUT = 30
# The From of every mail: an address, optionally with a (Japanese) display name.
MAIL_FROM = "ヒヤリ・ハット事例ナレッジベース <hiyari-kb@localhost>"
# How staff reach this app: the start of every link in a mail (no request to ask it from)
# and of the address printed on sign-in slips.
PUBLIC_URL = "http://127.0.0.1:5000"
# Attempts before a mail the server keeps refusing for now (4xx, down) is given up as failed
# (waits of 1, 2, 4 … minutes, at most an hour, between them: 24 attempts ≈ 19 hours).
MAIL_MAX_ATTEMPTS = 24
# Days before a 自己点検 closes on which reminders (to those not done) and the 所属長's
# digest of non-respondents go out, separated by commas (kb/reminders.py).
CAMPAIGN_REMINDER_DAYS = "3,1"
# Sharing cases with other municipalities (kb/sharing.py, `export-cases`): the office's
# 全国地方公共団体コード, 6 digits with the check digit or the first 5 (131016 or 13101);
# required for an export, as the exported ids are made from it.
MUNICIPALITY_CODE = ""
# The office's name and prefecture as the exported cases give them (自治体名 is required
# for an export; 都道府県 may stay empty).
MUNICIPALITY_NAME = ""
PREFECTURE = ""

PLACEHOLDER_SECRET = "change-me"
SECRET_KEY_FILE = "secret_key"


def defaults() -> dict:
    """The settings above as a dict, keyed by their names."""
    return {name: value for name, value in globals().items() if _is_setting(name)}


def from_environment(environ=os.environ) -> dict:
    """Settings given as ``KB_*`` variables, converted to the type of their default."""
    found = {}
    for name, default in defaults().items():
        raw = environ.get(f"KB_{name}")
        if raw is not None:
            found[name] = _convert(name, raw, default)
    return found


def _is_setting(name: str) -> bool:
    return name.isupper() and name not in {"PROJECT_DIR", "PLACEHOLDER_SECRET", "SECRET_KEY_FILE"}


def _convert(name: str, raw: str, default):
    if isinstance(default, bool):
        if raw.strip().lower() in {"1", "true", "yes", "on"}:
            return True
        if raw.strip().lower() in {"0", "false", "no", "off", ""}:
            return False
        raise ValueError(f"KB_{name} must be true or false, not {raw!r}")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"KB_{name} must be a whole number, not {raw!r}") from None
    return raw
