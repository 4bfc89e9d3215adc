"""Roles and the one check every core function uses before acting (DESIGN §1)."""

from kb.exceptions import Forbidden

ROLES = ("staff", "manager", "reviewer", "trainer", "admin")
ROLE_LABELS = {
    "staff": "職員",
    "manager": "所属長",
    "reviewer": "情報管理担当",
    "trainer": "研修担当",
    "admin": "管理者",
}


def require_role(actor, *roles: str) -> None:
    """Raise Forbidden unless ``actor`` (a User, or None) holds one of ``roles``."""
    if actor is None or not actor.has_role(*roles):
        raise Forbidden(f"requires one of the roles {', '.join(roles)}")
