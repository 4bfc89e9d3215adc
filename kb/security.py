"""Sign-in, CSRF, rate limits, the secret-key guard and the security headers."""

from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from flask import jsonify, redirect, request, url_for
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager, current_user
from flask_wtf.csrf import CSRFProtect

from kb import config, users
from kb.db import get_db

csrf = CSRFProtect()
limiter = Limiter(key_func=get_remote_address)
login_manager = LoginManager()

# Endpoints reachable without signing in.
PUBLIC_ENDPOINTS = {"auth.login", "static"}

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
    """True for a path on this site ("/cases/3"), False for anything that could leave it."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return False
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc


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
    csrf.init_app(app)
    limiter.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "続けるにはログインしてください。"
    login_manager.session_protection = "basic"
    app.before_request(_require_login)
    app.after_request(_add_security_headers)
