"""Users, departments and roles, with password hashing and the role checks.

Every function that changes accounts takes the acting user and checks its roles here,
in the core, so no crafted request can reach it around a template. The command line
acts as ``SYSTEM``.
"""

import functools
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import yaml
from werkzeug.security import check_password_hash, generate_password_hash

from kb import audit
from kb.db import transaction, utcnow
from kb.exceptions import Conflict, Forbidden, Invalid, NotFound
from kb.roles import ROLES, require_role

LOGIN_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{2,39}$")
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 200
MAX_NAME_LENGTH = 60


@dataclass(frozen=True)
class User:
    """A signed-in user, as flask-login and the core functions see it."""

    user_id: int | None
    login: str
    display_name: str
    department_id: int | None
    department_name: str
    roles: frozenset
    active: bool = True
    # Raised to end every session of the user at once (sign-out, password reset,
    # deactivation); a session carries the generation it began under.
    session_generation: int = 0

    def has_role(self, *roles: str) -> bool:
        return any(role in self.roles for role in roles)

    # flask-login's user protocol
    @property
    def is_active(self) -> bool:
        return self.active

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        """What the session stores: "<user_id>:<session_generation>" (see load_session_user)."""
        return f"{self.user_id}:{self.session_generation}"


SYSTEM = User(None, "cli", "コマンドライン", None, "", frozenset({"admin"}))
# Reads as any member of staff: published cases only (search from the command line).
READER = User(None, "cli", "コマンドライン", None, "", frozenset({"staff"}))


# --- departments ---------------------------------------------------------------

def load_departments(db, path: Path) -> int:
    """Insert the departments of a seed YAML file that are not there yet; return how many."""
    entries = yaml.safe_load(Path(path).read_text(encoding="utf-8"))["departments"]
    added = 0
    with transaction(db):
        for position, entry in enumerate(entries):
            if db.execute("SELECT 1 FROM departments WHERE code = ?", [entry["code"]]).fetchone():
                continue
            parent = None
            if entry.get("parent"):
                parent = get_department_by_code(db, entry["parent"])["department_id"]
            db["departments"].insert({
                "code": entry["code"], "name": entry["name"], "parent_id": parent,
                "position": position, "created_at": utcnow(),
            })
            added += 1
    return added


def list_departments(db) -> list[dict]:
    """Active departments in seed order, each with ``label`` (課 shown under its 部)."""
    rows = db.query(
        "SELECT d.*, p.name AS parent_name FROM departments d"
        " LEFT JOIN departments p ON p.department_id = d.parent_id"
        " WHERE d.active = 1 ORDER BY d.position, d.department_id"
    )
    return [dict(row, label=f"{row['parent_name']} {row['name']}" if row["parent_name"]
                 else row["name"]) for row in rows]


def get_department(db, department_id) -> dict:
    row = db.execute_returning_dicts(
        "SELECT * FROM departments WHERE department_id = ?", [department_id])
    if not row:
        raise NotFound(f"department {department_id}")
    return row[0]


def get_department_by_code(db, code: str) -> dict:
    row = db.execute_returning_dicts("SELECT * FROM departments WHERE code = ?", [code])
    if not row:
        raise NotFound(f"department {code}")
    return row[0]


def find_department(db, code_or_name: str) -> dict:
    """A department by its code or its exact name (for the command line)."""
    row = db.execute_returning_dicts(
        "SELECT * FROM departments WHERE code = ? OR name = ? ORDER BY department_id LIMIT 1",
        [code_or_name, code_or_name])
    if not row:
        raise NotFound(f"department {code_or_name}")
    return row[0]


# --- users ------------------------------------------------------------------------

USER_QUERY = (
    "SELECT u.*, d.name AS department_name,"
    " (SELECT group_concat(role) FROM user_roles r WHERE r.user_id = u.user_id) AS role_list"
    " FROM users u JOIN departments d ON d.department_id = u.department_id"
)


def _user_from_row(row: dict) -> User:
    return User(
        user_id=row["user_id"], login=row["login"], display_name=row["display_name"],
        department_id=row["department_id"], department_name=row["department_name"],
        roles=frozenset((row["role_list"] or "").split(",")) - {""},
        active=bool(row["active"]), session_generation=row["session_generation"],
    )


def get_user(db, user_id) -> User:
    """The user with this id, active or not; NotFound for an unknown id."""
    rows = db.execute_returning_dicts(f"{USER_QUERY} WHERE u.user_id = ?", [user_id])
    if not rows:
        raise NotFound(f"user {user_id}")
    return _user_from_row(rows[0])


def find_roster_user(db, column: str, value: str) -> User | None:
    """The roster account (source 'roster') whose ``column`` — "employee_number" or
    "login" — equals ``value`` ignoring case, active or not; None when there is none, or
    more than one.

    Directory sign-in uses it: a local account (the admin's) is never reached through
    the directory, even when a directory entry happens to carry the same name. Case is
    ignored because directories compare names that way (AD answers "Sato" for "sato").
    """
    if column not in ("employee_number", "login"):
        raise ValueError(f"cannot match accounts by {column!r}")
    rows = db.execute_returning_dicts(
        f"{USER_QUERY} WHERE u.{column} = ? COLLATE NOCASE AND u.source = 'roster' LIMIT 2",
        [value])
    return _user_from_row(rows[0]) if len(rows) == 1 else None


def load_session_user(db, session_id: str) -> User | None:
    """The user a session names ("<user_id>:<session_generation>", from User.get_id), or
    None when it is unknown, malformed, deactivated or of an ended generation."""
    try:
        user_id, generation = str(session_id).split(":")
        user = get_user(db, int(user_id))
    except (NotFound, ValueError, TypeError):
        return None
    if not user.active or str(user.session_generation) != generation:
        return None
    return user


def end_sessions(db, user_id: int) -> None:
    """End every session of the user, in every browser, at once (part of the caller's
    transaction when there is one)."""
    with transaction(db):
        db.execute("UPDATE users SET session_generation = session_generation + 1"
                   " WHERE user_id = ?", [user_id])


def sign_out(db, user: User) -> None:
    """Sign the user out everywhere: a session cookie copied before this no longer works."""
    with transaction(db):
        end_sessions(db, user.user_id)
        audit.record(db, user, "logout")


def list_users(db, actor: User) -> list[User]:
    require_role(actor, "admin")
    rows = db.execute_returning_dicts(f"{USER_QUERY} ORDER BY u.active DESC, d.position, u.login")
    return [_user_from_row(row) for row in rows]


@functools.cache
def _dummy_hash() -> str:
    return generate_password_hash("not-a-real-password")


def authenticate(db, login: str, password: str) -> User | None:
    """The active user with this login and password, or None.

    An unknown login, and an account with no password yet (a roster account stores ''
    until its owner sets one), cost the same hash check as a wrong password, so the time
    taken does not tell whether an account exists or has a password.
    """
    rows = db.execute_returning_dicts(f"{USER_QUERY} WHERE u.login = ?", [login.strip()])
    if not rows or not rows[0]["password_hash"]:
        check_password_hash(_dummy_hash(), password)
        return None
    row = rows[0]
    if not check_password_hash(row["password_hash"], password) or not row["active"]:
        return None
    return _user_from_row(row)


def record_login(db, user: User, *, succeeded: bool, login: str = "") -> None:
    with transaction(db):
        if succeeded:
            db.execute("UPDATE users SET last_login_at = ? WHERE user_id = ?",
                       [utcnow(), user.user_id])
            audit.record(db, user, "login")
        else:
            audit.record(db, None, "login_failed", target=login[:MAX_NAME_LENGTH])


def validate_account(db, *, login=None, display_name, department_id, roles, password=None,
                     user_id=None) -> dict[str, list[str]]:
    """Check account fields; return Japanese messages by field (empty when all is well)."""
    errors: dict[str, list[str]] = {}
    if login is not None:
        if not login:
            errors["login"] = ["ログインIDを入力してください。"]
        elif not LOGIN_PATTERN.match(login):
            errors["login"] = ["ログインIDは半角英数字と . _ - で3〜40文字にしてください。"]
        elif db.execute("SELECT 1 FROM users WHERE login = ? AND user_id IS NOT ?",
                        [login, user_id]).fetchone():
            errors["login"] = ["このログインIDは既に使われています。"]
    if not display_name.strip():
        errors["display_name"] = ["氏名を入力してください。"]
    elif len(display_name) > MAX_NAME_LENGTH:
        errors["display_name"] = [f"氏名は{MAX_NAME_LENGTH}文字以内にしてください。"]
    try:
        get_department(db, department_id)
    except NotFound:
        errors["department_id"] = ["所属を選んでください。"]
    if not roles:
        errors["roles"] = ["役割を一つ以上選んでください。"]
    elif set(roles) - set(ROLES):
        errors["roles"] = ["不明な役割が含まれています。"]
    if password is not None:
        if len(password) < MIN_PASSWORD_LENGTH:
            errors["password"] = [f"パスワードは{MIN_PASSWORD_LENGTH}文字以上にしてください。"]
        elif len(password) > MAX_PASSWORD_LENGTH:
            errors["password"] = [f"パスワードは{MAX_PASSWORD_LENGTH}文字以内にしてください。"]
    return errors


def create_user(db, actor: User, *, login: str, display_name: str, department_id: int,
                roles, password: str) -> User:
    """Create an account. Requires admin; raises Invalid with messages by field."""
    require_role(actor, "admin")
    login = login.strip()
    roles = sorted(set(roles))
    errors = validate_account(db, login=login, display_name=display_name,
                              department_id=department_id, roles=roles, password=password)
    if errors:
        raise Invalid(errors)
    now = utcnow()
    with transaction(db):
        user_id = db["users"].insert({
            "login": login, "display_name": display_name.strip(),
            "department_id": department_id, "password_hash": generate_password_hash(password),
            "active": 1, "created_at": now, "updated_at": now,
        }).last_pk
        db["user_roles"].insert_all({"user_id": user_id, "role": role} for role in roles)
        _refresh_campaigns(db, user_id)
        audit.record(db, actor, "user_create", target=login,
                     detail={"roles": roles, "department_id": department_id})
    return get_user(db, user_id)


def _refresh_campaigns(db, user_id: int) -> None:
    """Open 自己点検 follow a new, moved or (de)activated account at once (kb.enrolment)."""
    from kb import enrolment  # here, not at the top: enrolment's imports reach back to users

    enrolment.refresh_people(db, [user_id])


def account_version(db, user_id: int) -> int:
    """The account's ``users.version``: the admin's edit form carries it back to
    ``update_user``. NotFound for an unknown id."""
    row = db.execute("SELECT version FROM users WHERE user_id = ?", [user_id]).fetchone()
    if row is None:
        raise NotFound(f"user {user_id}")
    return row[0]


def update_user(db, actor: User, user_id: int, *, display_name: str, department_id: int,
                roles, active: bool, password: str | None = None, version=None) -> User:
    """Change an account's name, department, roles, active flag and (optionally) password.

    Raises Invalid (messages by field), and Conflict when the account changed since
    ``version`` (see ``account_version``; None skips the check, as the command line
    does): an admin's older form must not undo another admin's change. Nothing is
    written in either case.
    """
    require_role(actor, "admin")
    before = get_user(db, user_id)
    roles = sorted(set(roles))
    errors = validate_account(db, display_name=display_name, department_id=department_id,
                              roles=roles, password=password or None, user_id=user_id)
    if actor.user_id == user_id and (not active or "admin" not in roles):
        errors.setdefault("roles", []).append(
            "自分自身の管理者の役割を外したり、無効にしたりすることはできません。")
    if errors:
        raise Invalid(errors)
    changes = {"display_name": display_name.strip(), "department_id": department_id,
               "active": int(bool(active)), "updated_at": utcnow()}
    if password:
        changes["password_hash"] = generate_password_hash(password)
    with transaction(db):
        # Compared inside the write transaction: the version checked is the one replaced.
        if version is not None and str(version) != str(account_version(db, user_id)):
            raise Conflict(f"user {user_id} changed since version {version}")
        db["users"].update(user_id, changes)
        db.execute("UPDATE users SET version = version + 1 WHERE user_id = ?", [user_id])
        db.execute("DELETE FROM user_roles WHERE user_id = ?", [user_id])
        db["user_roles"].insert_all({"user_id": user_id, "role": role} for role in roles)
        if password or not active:  # a reset or a deactivation signs the person out everywhere
            end_sessions(db, user_id)
        _refresh_campaigns(db, user_id)
        audit.record(db, actor, "user_update", target=before.login, detail={
            "roles": roles, "department_id": department_id, "active": bool(active),
            "password_changed": bool(password),
        })
    return get_user(db, user_id)


# --- choosing a password ------------------------------------------------------------

COMMON_PASSWORDS_FILE = Path(__file__).resolve().parent.parent / "data" / "seed" / "common-passwords.txt"
MIN_DISTINCT_CHARACTERS = 4
PASSWORD_RULES = (f"空白を除いて{MIN_PASSWORD_LENGTH}文字以上で、同じ文字の繰り返しでなく、ログインIDを含まず、"
                  "よく使われているパスワード（password123、qwertyuiop など）でないもの")


@functools.cache
def common_passwords() -> frozenset[str]:
    """The refused passwords of data/seed/common-passwords.txt, lower case."""
    lines = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines
                     if line.strip() and not line.startswith("#"))


def _is_common(password: str) -> bool:
    folded = unicodedata.normalize("NFKC", password).strip().lower()
    # "sakura2026!" is as guessable as "sakura": a listed word followed only by digits
    # and symbols is refused too.
    stem = re.sub(r"[\d\W_]+$", "", folded)
    return folded in common_passwords() or (bool(stem) and stem in common_passwords())


def check_new_password(login: str, password: str, confirm: str) -> dict[str, list[str]]:
    """The rules for a password a person chooses (a sign-in slip, パスワード変更): at least
    MIN_PASSWORD_LENGTH characters, not containing the login id (ignoring case), not in the
    common-passwords list, typed the same twice. Japanese messages by field ("password",
    "password_confirm"); empty when all is well."""
    errors: dict[str, list[str]] = {}
    # What the rules count: spaces and invisible characters (zero-width, controls) add no
    # strength, and would let 「ten spaces」 or a login id split by U+200B through.
    folded = "".join(char for char in unicodedata.normalize("NFKC", password or "").lower()
                     if not char.isspace() and unicodedata.category(char)[0] not in "CZ")
    if not password:
        errors["password"] = ["新しいパスワードを入力してください。"]
    elif len(password) < MIN_PASSWORD_LENGTH:
        errors["password"] = [f"パスワードは{MIN_PASSWORD_LENGTH}文字以上にしてください。"]
    elif len(password) > MAX_PASSWORD_LENGTH:
        errors["password"] = [f"パスワードは{MAX_PASSWORD_LENGTH}文字以内にしてください。"]
    elif len(folded) < MIN_PASSWORD_LENGTH:
        errors["password"] = [f"パスワードは、空白や見えない文字を除いて{MIN_PASSWORD_LENGTH}文字以上に"
                              "してください。"]
    elif len(set(folded)) < MIN_DISTINCT_CHARACTERS:
        errors["password"] = ["同じ文字の繰り返し（xxxxxxxxxx、abababab など）は使えません。"]
    elif login and unicodedata.normalize("NFKC", login).lower() in folded:
        errors["password"] = ["ログインIDを含むパスワードは使えません。"]
    elif _is_common(password) or _is_common(folded):
        errors["password"] = ["よく使われているパスワード（またはそれに数字や記号を足しただけのもの）"
                              "は使えません。推測されにくい言葉を組み合わせてください。"]
    if "password" not in errors and password != confirm:
        errors["password_confirm"] = ["確認のため、同じパスワードをもう一度入力してください。"]
    return errors


def store_password(db, user_id: int, password: str) -> None:
    """Write a new password hash and end every session of the user (part of the caller's
    transaction). The caller has checked the rules and who may do it."""
    with transaction(db):
        db.execute("UPDATE users SET password_hash = ?, updated_at = ?, version = version + 1"
                   " WHERE user_id = ?", [generate_password_hash(password), utcnow(), user_id])
        end_sessions(db, user_id)


def change_own_password(db, actor: User, *, current_password: str, password: str,
                        confirm: str) -> User:
    """The signed-in person changes their own password: the current one, then a new one
    (check_new_password) twice. Every session of theirs ends, this one included — the
    caller signs this browser in again with the returned User. Audited as
    "password_change". Raises Invalid (messages by field, "current_password" among
    them) and writes nothing when refused.
    """
    if actor is None or actor.user_id is None:
        raise Forbidden("only a signed-in person changes their own password")
    row = db.execute("SELECT password_hash FROM users WHERE user_id = ?",
                     [actor.user_id]).fetchone()
    if row is None:
        raise NotFound(f"user {actor.user_id}")
    errors: dict[str, list[str]] = {}
    if not row[0]:
        errors["current_password"] = [
            "このアカウントにはまだパスワードがありません（ディレクトリでログインしています）。"
            "パスワードが必要なときは、所属長か管理者にログイン用紙を印刷してもらってください。"]
    elif not check_password_hash(row[0], current_password or ""):
        errors["current_password"] = ["現在のパスワードが正しくありません。"]
    errors.update(check_new_password(actor.login, password, confirm))
    if errors:
        raise Invalid(errors)
    with transaction(db):
        store_password(db, actor.user_id, password)
        audit.record(db, actor, "password_change", target=actor.login)
    return get_user(db, actor.user_id)
