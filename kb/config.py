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
# Login attempts allowed per client address (Flask-Limiter syntax).
LOGIN_RATE_LIMIT = "10 per minute"
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
