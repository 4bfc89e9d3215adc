"""Users, departments and roles, with password hashing and the role checks.

Every function that changes accounts takes the acting user and checks its roles here,
in the core, so no crafted request can reach it around a template. The command line
acts as ``SYSTEM``.
"""

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from werkzeug.security import check_password_hash, generate_password_hash

from kb import audit
from kb.db import transaction, utcnow
from kb.exceptions import Invalid, NotFound
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
        return str(self.user_id)


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
        active=bool(row["active"]),
    )


def get_user(db, user_id) -> User:
    """The user with this id, active or not; NotFound for an unknown id."""
    rows = db.execute_returning_dicts(f"{USER_QUERY} WHERE u.user_id = ?", [user_id])
    if not rows:
        raise NotFound(f"user {user_id}")
    return _user_from_row(rows[0])


def load_session_user(db, user_id: str) -> User | None:
    """The user a session names, or None when it is unknown, malformed or deactivated."""
    try:
        user = get_user(db, int(user_id))
    except (NotFound, ValueError, TypeError):
        return None
    return user if user.active else None


def list_users(db, actor: User) -> list[User]:
    require_role(actor, "admin")
    rows = db.execute_returning_dicts(f"{USER_QUERY} ORDER BY u.active DESC, d.position, u.login")
    return [_user_from_row(row) for row in rows]


@functools.cache
def _dummy_hash() -> str:
    return generate_password_hash("not-a-real-password")


def authenticate(db, login: str, password: str) -> User | None:
    """The active user with this login and password, or None.

    An unknown login costs the same hash check as a wrong password, so the time taken
    does not tell whether an account exists.
    """
    rows = db.execute_returning_dicts(f"{USER_QUERY} WHERE u.login = ?", [login.strip()])
    if not rows:
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
        audit.record(db, actor, "user_create", target=login,
                     detail={"roles": roles, "department_id": department_id})
    return get_user(db, user_id)


def update_user(db, actor: User, user_id: int, *, display_name: str, department_id: int,
                roles, active: bool, password: str | None = None) -> User:
    """Change an account's name, department, roles, active flag and (optionally) password."""
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
        db["users"].update(user_id, changes)
        db.execute("DELETE FROM user_roles WHERE user_id = ?", [user_id])
        db["user_roles"].insert_all({"user_id": user_id, "role": role} for role in roles)
        audit.record(db, actor, "user_update", target=before.login, detail={
            "roles": roles, "department_id": department_id, "active": bool(active),
            "password_changed": bool(password),
        })
    return get_user(db, user_id)
