"""Directory sign-in (Active Directory / LDAP): the only module that talks to the directory.

The directory proves the password; the account is ours. ``sign_in`` checks a local
password first (the admin's account, a password chosen with a slip), then asks the
directory, and signs a person in through it only into an active roster account whose
employee number (or login) equals the configured attribute of their directory entry.
Without ``LDAP_URLS`` there is no directory and sign-in is local passwords only.

Settings are read from the app's config mapping (``kb/config.py``): ``LDAP_URLS``,
``LDAP_START_TLS``, ``LDAP_CA_FILE``, ``LDAP_BIND_TEMPLATE`` or ``LDAP_SEARCH_BASE`` +
``LDAP_SEARCH_FILTER`` + ``LDAP_BIND_DN``/``LDAP_BIND_PASSWORD``, ``LDAP_MATCH_ATTRIBUTE``,
``LDAP_MATCH_COLUMN``, ``LDAP_TIMEOUT``.
"""

import logging
import os
import re
import ssl
from dataclasses import dataclass

from ldap3 import BASE, NONE, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn

from kb import users

log = logging.getLogger(__name__)

MATCH_COLUMNS = ("employee_number", "login")
# What LDAP_MATCH_ATTRIBUTE may name; it is put into a search's attribute list as written.
ATTRIBUTE_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")


class DirectoryUnavailable(Exception):
    """No directory server answered within the timeout (or TLS could not be set up)."""


class NoAccount(Exception):
    """The directory accepted the password, but no active roster account matches the
    person's entry: not in the roster, deactivated, or the entry lacks the attribute."""


class DirectoryMisconfigured(ValueError):
    """The LDAP_* settings contradict each other; the message says which and why."""


@dataclass(frozen=True)
class DirectorySettings:
    urls: tuple[str, ...]
    start_tls: bool
    ca_file: str
    bind_template: str
    search_base: str
    search_filter: str
    bind_dn: str
    bind_password: str
    match_attribute: str
    match_column: str
    timeout: int

    @property
    def uses_search(self) -> bool:
        """Search mode: find the person's entry (as the service account), then bind as it."""
        return not self.bind_template


def directory_settings(config) -> DirectorySettings | None:
    """The directory described by the LDAP_* settings of ``config``, or None when
    ``LDAP_URLS`` is empty. Raises DirectoryMisconfigured when they do not fit together."""
    urls = tuple(url for url in re.split(r"[\s,]+", config.get("LDAP_URLS") or "") if url)
    if not urls:
        return None
    found = DirectorySettings(
        urls=urls, start_tls=bool(config["LDAP_START_TLS"]), ca_file=config["LDAP_CA_FILE"],
        bind_template=config["LDAP_BIND_TEMPLATE"], search_base=config["LDAP_SEARCH_BASE"],
        search_filter=config["LDAP_SEARCH_FILTER"], bind_dn=config["LDAP_BIND_DN"],
        bind_password=config["LDAP_BIND_PASSWORD"],
        match_attribute=config["LDAP_MATCH_ATTRIBUTE"], match_column=config["LDAP_MATCH_COLUMN"],
        timeout=int(config["LDAP_TIMEOUT"]),
    )
    problems = []
    for url in urls:
        if not url.lower().startswith(("ldap://", "ldaps://")):
            problems.append(f"KB_LDAP_URLS: {url!r} is not an ldap:// or ldaps:// URL")
        elif url.lower().startswith("ldaps://") and found.start_tls:
            problems.append("KB_LDAP_START_TLS is for ldap:// URLs; ldaps:// is TLS already")
    if found.ca_file and not os.path.isfile(found.ca_file):
        problems.append(f"KB_LDAP_CA_FILE: {found.ca_file} is not a file")
    if found.bind_template and "{login}" not in found.bind_template:
        problems.append("KB_LDAP_BIND_TEMPLATE must contain {login}")
    if found.uses_search and not found.search_base:
        problems.append("set KB_LDAP_BIND_TEMPLATE, or KB_LDAP_SEARCH_BASE to find people")
    if found.uses_search or found.search_base:
        if "{login}" not in found.search_filter:
            problems.append("KB_LDAP_SEARCH_FILTER must contain {login}")
    if found.match_attribute and not ATTRIBUTE_PATTERN.match(found.match_attribute):
        problems.append(
            f"KB_LDAP_MATCH_ATTRIBUTE: {found.match_attribute!r} is not an attribute name")
    if found.bind_template and found.match_attribute and not found.search_base \
            and "=" not in found.bind_template:
        # A "{login}@ward.local" bind names no entry to read the attribute from.
        problems.append("KB_LDAP_MATCH_ATTRIBUTE with a bind template that is not a DN needs "
                        "KB_LDAP_SEARCH_BASE (and KB_LDAP_SEARCH_FILTER) to read the attribute")
    if found.match_column not in MATCH_COLUMNS:
        problems.append(f"KB_LDAP_MATCH_COLUMN must be one of {', '.join(MATCH_COLUMNS)}")
    if found.timeout <= 0:
        problems.append("KB_LDAP_TIMEOUT must be at least 1 second")
    if problems:
        raise DirectoryMisconfigured("; ".join(problems))
    return found


def init_app(app) -> None:
    """Refuse to start with LDAP_* settings that cannot work (DirectoryMisconfigured):
    a typo should stop the app, not show up as sign-ins failing one by one."""
    directory_settings(app.config)


def sign_in(db, config, login: str, password: str) -> users.User | None:
    """The user a login id and password identify, or None for a wrong password or an
    unknown login (one answer for both).

    A local password is checked first, so local accounts sign in whether or not the
    directory answers. Then, when a directory is configured, it checks the password:
    raises DirectoryUnavailable when it cannot be reached within the timeout, and
    NoAccount when it accepts the password but no active roster account matches.
    """
    user = users.authenticate(db, login, password)
    if user is not None:
        return user
    settings = directory_settings(config)
    if settings is None:
        return None
    key = verify_password(settings, login, password)
    if key is None:
        return None
    user = users.find_roster_user(db, settings.match_column, key)
    if user is None or not user.active:
        raise NoAccount(key)
    return user


def verify_password(settings: DirectorySettings, login: str, password: str) -> str | None:
    """Bind to the directory as the person ``login`` names with ``password``.

    Returns the value their entry holds in LDAP_MATCH_ATTRIBUTE (the login id as typed
    when it is empty), or None when the directory refuses: unknown person, wrong
    password, an empty password (an LDAP bind with one is anonymous and "succeeds").
    Raises NoAccount when the password is right but the entry lacks the attribute (or
    holds several values of it). The servers of LDAP_URLS are tried in order, each
    with LDAP_TIMEOUT to connect and to answer; raises DirectoryUnavailable when none does.
    """
    login = login.strip()
    if not login or not password:
        return None
    failures = []
    for url in settings.urls:
        try:
            return _verify_on(settings, _server(settings, url), login, password)
        except LDAPException as error:  # unreachable, timed out, TLS refused: try the next
            failures.append(f"{url}: {type(error).__name__}: {error}")
    log.warning("directory unavailable: %s", " | ".join(failures))
    raise DirectoryUnavailable("; ".join(failures))


def _server(settings: DirectorySettings, url: str) -> Server:
    tls = None
    if url.lower().startswith("ldaps://") or settings.start_tls:
        tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=settings.ca_file or None)
    # get_info=NONE: reading the schema and server info would cost extra round trips.
    return Server(url, get_info=NONE, tls=tls, connect_timeout=settings.timeout)


def _connection(settings: DirectorySettings, server: Server, user=None, password=None):
    """An open connection, StartTLS done when configured, not yet bound."""
    # auto_referrals=False: Active Directory answers searches with referrals to other
    # domains, which ldap3 would otherwise follow to servers we never configured.
    connection = Connection(server, user=user, password=password, read_only=True,
                            auto_referrals=False, receive_timeout=settings.timeout,
                            raise_exceptions=False)
    connection.open()
    if settings.start_tls and not connection.start_tls():
        connection.unbind()
        # A server that refuses StartTLS must not receive the password in clear text.
        raise _TLSRefused(f"StartTLS refused: {connection.result}")
    return connection


class _TLSRefused(LDAPException):
    pass


def _verify_on(settings: DirectorySettings, server: Server, login: str,
               password: str) -> str | None:
    if settings.uses_search:
        found = _find_entry(settings, server, settings.bind_dn, settings.bind_password, login)
        if found is None:
            return None
        user_dn, attributes = found
        connection = _connection(settings, server, user_dn, password)
        try:
            if not connection.bind():
                return None
        finally:
            connection.unbind()
        return _match_value(settings, attributes, login)
    user_dn = settings.bind_template.replace("{login}", escape_rdn(login))
    connection = _connection(settings, server, user_dn, password)
    try:
        if not connection.bind():
            return None
        if not settings.match_attribute:
            return login
        if settings.search_base:
            found = _search(settings, connection, login)
        else:
            found = _read(settings, connection, user_dn)
    finally:
        connection.unbind()
    if found is None:  # the password is right, but the entry cannot be read back
        raise NoAccount(f"no entry to read {settings.match_attribute} from for {login!r}")
    return _match_value(settings, found[1], login)


def _find_entry(settings, server, bind_dn, bind_password, login):
    """The one entry the search filter finds for ``login``, as the service account
    (anonymously when LDAP_BIND_DN is empty). None when there is none, or several."""
    connection = _connection(settings, server, bind_dn or None, bind_password or None)
    try:
        if not connection.bind():
            # The service account's own password is wrong: that is our setup, not the
            # person's password, so the office must hear that the directory is unusable.
            raise _ServiceBindFailed(f"service account bind refused: {connection.result}")
        return _search(settings, connection, login)
    finally:
        connection.unbind()


class _ServiceBindFailed(LDAPException):
    pass


def _search(settings, connection, login):
    query = settings.search_filter.replace("{login}", escape_filter_chars(login))
    attributes = [settings.match_attribute] if settings.match_attribute else []
    connection.search(settings.search_base, query, search_scope=SUBTREE,
                      attributes=attributes, size_limit=2, time_limit=settings.timeout)
    entries = [item for item in connection.response or () if item.get("type") == "searchResEntry"]
    if len(entries) != 1:  # none, or a filter that is not unique: never guess who is meant
        return None
    return entries[0]["dn"], entries[0]["attributes"]


def _read(settings, connection, user_dn):
    connection.search(user_dn, "(objectClass=*)", search_scope=BASE,
                      attributes=[settings.match_attribute], time_limit=settings.timeout)
    entries = [item for item in connection.response or () if item.get("type") == "searchResEntry"]
    return (entries[0]["dn"], entries[0]["attributes"]) if entries else None


def _match_value(settings, attributes, login) -> str:
    if not settings.match_attribute:
        return login
    value = _attribute(attributes, settings.match_attribute)
    if isinstance(value, (list, tuple)):
        value = value[0] if len(value) == 1 else None  # several values: which one is meant?
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    value = str(value).strip() if value is not None else ""
    if not value:
        raise NoAccount(f"no single {settings.match_attribute} in the entry of {login!r}")
    return value


def _attribute(attributes, name):
    for key, value in (attributes or {}).items():
        if key.lower() == name.lower():  # attribute names are case-insensitive
            return value
    return None
