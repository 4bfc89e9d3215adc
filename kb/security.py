"""Sign-in, CSRF, rate limits, the secret-key guard and the security headers."""

import unicodedata
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from flask import current_app, jsonify, redirect, request, url_for
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager, current_user
from flask_wtf.csrf import CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix

from kb import config, users
from kb.db import get_db

csrf = CSRFProtect()
limiter = Limiter(key_func=get_remote_address)
login_manager = LoginManager()

# Endpoints reachable without signing in.
# slips.redeem: a person with a sign-in slip chooses their password (kb/views/slips.py).
PUBLIC_ENDPOINTS = {"auth.login", "slips.redeem", "static"}

CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


class InsecureSecretKey(RuntimeError):
    """The app was started for real use with the placeholder secret key."""


def resolve_secret_key(app) -> None:
    """Take the secret key from the data folder unless configured; refuse the placeholder.

    Outside testing and debug mode, a placeholder or empty key stops the app: signed
    sessions would be forgeable by anyone who has read this source.
    """
    if app.config.get("SECRET_KEY") in (None, "", config.PLACEHOLDER_SECRET):
        key_file = Path(app.config["DATA_DIR"]) / config.SECRET_KEY_FILE
        if key_file.is_file():
            app.config["SECRET_KEY"] = key_file.read_text(encoding="ascii").strip()
    if app.config.get("SECRET_KEY") in (None, "", config.PLACEHOLDER_SECRET) \
            and not (app.testing or app.debug):
        raise InsecureSecretKey(
            "The secret key is the placeholder. Set KB_SECRET_KEY, or write a random key to "
            f"{Path(app.config['DATA_DIR']) / config.SECRET_KEY_FILE} (scripts/run does this)."
        )


def is_safe_next(target: str | None) -> bool:
    """True for a path on this site ("/cases/3"), False for anything that could leave it.

    Every redirect to a target taken from the request (sign-in's ``next``, the workshop
    form's ``back``) goes through this check.
    """
    # Browsers drop tabs and new lines anywhere in a URL and read a backslash as "/", so
    # "/<tab>/evil.example" and "/\evil.example" both lead to //evil.example: refuse any
    # control character or backslash rather than guess how a browser cleans the URL.
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target \
            or any(ord(char) < 0x20 or ord(char) == 0x7f for char in target):
        return False
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc


def _login_id() -> str:
    # The prefix keeps the key apart from addresses, and never empty (Flask-Limiter
    # skips a limit whose key is empty). Folded as sign-in matches it (users.login is
    # COLLATE NOCASE; the directory ignores case too): 「HANAKO」 is hanako's attempt, else
    # each spelling of one login id would get its own ten guesses.
    typed = unicodedata.normalize("NFKC", request.form.get("login") or "").strip().casefold()
    return "login:" + typed[:64]


def _sign_in_failed(response) -> bool:
    # A sign-in that succeeds answers with a redirect; anything else (wrong password,
    # empty field, missing CSRF token, 429) is an attempt that counts.
    return response.status_code != 302


def limit_failed_logins(view, failed=_sign_in_failed):
    """Rate-limit a sign-in view: LOGIN_RATE_LIMIT failed attempts per login id (wherever
    they come from) and, separately, per client address. Successful sign-ins count for
    neither, so an office signing in at nine o'clock through one address is not locked out.
    ``failed(response)`` tells a failed attempt (default: any answer but a redirect).
    """
    for key_func in (_login_id, get_remote_address):
        view = limiter.limit(lambda: current_app.config["LOGIN_RATE_LIMIT"], key_func=key_func,
                             methods=["POST"], deduct_when=failed)(view)
    return view


def _require_login():
    if request.endpoint in PUBLIC_ENDPOINTS or current_user.is_authenticated:
        return None
    if request.path.startswith("/api/"):
        return jsonify({"error": "ログインしてください。"}), 401
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def _add_security_headers(response):
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.endpoint != "static":
        # Pages show personal-information cases: keep them out of shared PCs' caches.
        response.headers["Cache-Control"] = "no-store"
    return response


@login_manager.user_loader
def _load_user(user_id: str):
    return users.load_session_user(get_db(), user_id)


def init_app(app) -> None:
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="kb_session",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=app.config["SESSION_HOURS"]),
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
    )
    resolve_secret_key(app)
    if app.config["TRUSTED_PROXIES"] > 0:
        # Behind our own reverse proxies only: the client address (for the sign-in limit)
        # is then read from X-Forwarded-For. Without a proxy that header is
        # whatever the client wrote, and trusting it would let anyone escape the limit.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=app.config["TRUSTED_PROXIES"],
                                x_proto=app.config["TRUSTED_PROXIES"])
    csrf.init_app(app)
    limiter.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "続けるにはログインしてください。"
    login_manager.session_protection = "basic"
    app.before_request(_require_login)
    app.after_request(_add_security_headers)
