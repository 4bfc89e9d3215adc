"""Directory sign-in (kb/directory.py) against a real OpenLDAP server, through /login.

slapd is started once for the module on free loopback ports (tests/ldap_server.py). Under
CI=true a missing slapd fails the run; elsewhere these tests are skipped with the reason.
"""

import os
import time

import pytest
from kb import create_app, directory, roster, users
from kb.db import get_db
from kb.views.auth import DIRECTORY_UNAVAILABLE, FAILED_LOGIN, NO_ACCOUNT
from tests.conftest import PASSWORD, add_user, login, make_app
from tests.ldap_server import (PEOPLE, PEOPLE_BASE, SERVICE_DN, SERVICE_PASSWORD, free_port,
                               raw_simple_bind, running_slapd, silent_port, slapd_executable)

ROSTER = ("職員番号,氏名,所属,在籍区分\r\n"
          "10001,佐藤 花子,kumin-koseki,\r\n"
          "10002,鈴木 一郎,kumin-koseki,退職\r\n").encode("cp932")
MODES = {
    "bind_template": {"LDAP_BIND_TEMPLATE": f"uid={{login}},{PEOPLE_BASE}"},
    "search": {"LDAP_SEARCH_BASE": PEOPLE_BASE,
               "LDAP_SEARCH_FILTER": "(&(objectClass=inetOrgPerson)(uid={login}))",
               "LDAP_BIND_DN": SERVICE_DN, "LDAP_BIND_PASSWORD": SERVICE_PASSWORD},
}


def password_of(uid):
    return PEOPLE[uid][1]


@pytest.fixture(scope="module")
def slapd(tmp_path_factory):
    if slapd_executable() is None:
        message = "Debian's slapd is not installed (scripts/test installs it as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    with running_slapd(tmp_path_factory.mktemp("slapd")) as server:
        yield server


@pytest.fixture
def directory_app(data_dir, slapd):
    """directory_app(mode="search", **settings): the app with the roster imported (10001
    active, 10002 retired) and signing in through slapd unless LDAP_URLS says otherwise."""

    def build(mode="bind_template", **settings):
        app = make_app(data_dir, **{"LOGIN_RATE_LIMIT": "1000 per minute",
                                    "LDAP_URLS": slapd.ldap_url, "LDAP_TIMEOUT": 2,
                                    **MODES[mode], **settings})
        with app.app_context():
            roster.import_staff(get_db(), users.SYSTEM, ROSTER, managers=frozenset())
        return app

    return build


def audit_actions(app):
    with app.app_context():
        return get_db().execute("SELECT action, actor, target FROM audit_log"
                                " WHERE action LIKE 'login%' ORDER BY audit_id").fetchall()


def page(response):
    return response.get_data(as_text=True)


@pytest.mark.parametrize("mode", MODES)
def test_directory_password_signs_in_to_the_matching_roster_account(directory_app, mode):
    app = directory_app(mode)
    client = app.test_client()
    response = login(client, "sato", password_of("sato"))
    assert response.status_code == 302
    assert "佐藤 花子" in page(client.get("/"))
    assert audit_actions(app)[-1] == ("login", "10001", None)


def test_login_id_case_does_not_matter_when_matched_by_employee_number(directory_app):
    client = directory_app().test_client()
    assert login(client, "SATO", password_of("sato")).status_code == 302


@pytest.mark.parametrize("mode", MODES)
def test_wrong_directory_password_gets_the_usual_message(directory_app, mode):
    app = directory_app(mode)
    response = login(app.test_client(), "sato", "not-the-password")
    assert response.status_code == 200
    assert FAILED_LOGIN in page(response)
    assert audit_actions(app)[-1] == ("login_failed", "cli", "sato")


@pytest.mark.parametrize("mode", MODES)
def test_person_unknown_to_the_directory_gets_the_usual_message(directory_app, mode):
    response = login(directory_app(mode).test_client(), "nobody", "whatever-password")
    assert response.status_code == 200
    assert FAILED_LOGIN in page(response)


@pytest.mark.parametrize("mode", MODES)
def test_person_missing_from_the_roster_is_told_there_is_no_account(directory_app, mode):
    app = directory_app(mode)
    response = login(app.test_client(), "tanaka", password_of("tanaka"))
    assert response.status_code == 200
    assert NO_ACCOUNT in page(response)
    assert audit_actions(app)[-1] == ("login_failed", "cli", "tanaka")


@pytest.mark.parametrize("mode", MODES)
def test_deactivated_roster_account_cannot_sign_in_through_the_directory(directory_app, mode):
    client = directory_app(mode).test_client()
    response = login(client, "suzuki", password_of("suzuki"))
    assert NO_ACCOUNT in page(response)
    assert client.get("/").status_code == 302


def test_entry_without_the_matched_attribute_has_no_account(directory_app):
    response = login(directory_app().test_client(), "takahashi", password_of("takahashi"))
    assert NO_ACCOUNT in page(response)


def test_accounts_can_be_matched_by_login(directory_app):
    # Roster logins are the employee numbers, so employeeNumber → users.login finds them.
    client = directory_app(LDAP_MATCH_COLUMN="login").test_client()
    assert login(client, "sato", password_of("sato")).status_code == 302


def test_directory_never_signs_into_a_local_account_of_the_same_name(directory_app):
    app = directory_app(LDAP_MATCH_ATTRIBUTE="uid", LDAP_MATCH_COLUMN="login")
    add_user(app, "kb-admin", "admin")  # local, with its own password
    client = app.test_client()
    assert NO_ACCOUNT in page(login(client, "kb-admin", password_of("kb-admin")))
    assert login(client, "kb-admin", PASSWORD).status_code == 302


def test_empty_password_is_refused_without_asking_the_directory(directory_app, slapd):
    dn = f"uid=sato,{PEOPLE_BASE}"
    # What the check prevents: this server takes a DN with an empty password as an
    # anonymous bind, and says yes (while the wrong password is refused: 49).
    port = int(slapd.ldap_url.rsplit(":", 1)[1])
    assert raw_simple_bind(port, dn, "") == 0
    assert raw_simple_bind(port, dn, "wrong") == 49
    settings = directory.directory_settings(directory_app().config)
    assert directory.verify_password(settings, "sato", "") is None
    unreachable = directory.directory_settings(
        directory_app(LDAP_URLS=f"ldap://127.0.0.1:{free_port()}").config)
    assert directory.verify_password(unreachable, "sato", "") is None  # no connection tried


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("login_id", ["*", "sat*", "s*o", ")(uid=*", "*)(uid=*))(|(uid=*",
                                      "sato)(|(uid=*", "sato,ou=people", "sato\\", "(sato)"])
def test_ldap_injection_in_the_login_id_signs_no_one_in(directory_app, mode, login_id):
    client = directory_app(mode).test_client()
    response = login(client, login_id, password_of("sato"))
    assert response.status_code == 200
    assert FAILED_LOGIN in page(response)
    assert client.get("/").status_code == 302


@pytest.mark.parametrize("mode", MODES)
def test_directory_down_gets_a_clear_message_not_an_error(directory_app, mode):
    app = directory_app(mode, LDAP_URLS=f"ldap://127.0.0.1:{free_port()}")
    response = login(app.test_client(), "sato", password_of("sato"))
    assert response.status_code == 200
    assert DIRECTORY_UNAVAILABLE in page(response)
    assert audit_actions(app)[-1] == ("login_failed", "cli", "sato")


@pytest.mark.parametrize("mode", MODES)
def test_directory_that_never_answers_gives_up_within_the_timeout(directory_app, mode):
    with silent_port() as port:
        app = directory_app(mode, LDAP_URLS=f"ldap://127.0.0.1:{port}", LDAP_TIMEOUT=1)
        client = app.test_client()
        started = time.monotonic()
        response = login(client, "sato", password_of("sato"))
        elapsed = time.monotonic() - started
    assert DIRECTORY_UNAVAILABLE in page(response)
    assert elapsed < 3, elapsed


def test_local_account_signs_in_while_the_directory_hangs(directory_app):
    with silent_port() as port:
        app = directory_app(LDAP_URLS=f"ldap://127.0.0.1:{port}", LDAP_TIMEOUT=1)
        add_user(app, "kb-admin", "admin")
        started = time.monotonic()
        response = login(app.test_client(), "kb-admin", PASSWORD)
        assert time.monotonic() - started < 1  # the directory was never asked
    assert response.status_code == 302


def test_next_server_is_tried_when_the_first_is_down(directory_app, slapd):
    app = directory_app(LDAP_URLS=f"ldap://127.0.0.1:{free_port()}, {slapd.ldap_url}")
    assert login(app.test_client(), "sato", password_of("sato")).status_code == 302


def test_ldaps_with_the_ca_file_signs_in(directory_app, slapd):
    app = directory_app(LDAP_URLS=slapd.ldaps_url, LDAP_CA_FILE=slapd.ca_file)
    assert login(app.test_client(), "sato", password_of("sato")).status_code == 302


def test_start_tls_with_the_ca_file_signs_in(directory_app, slapd):
    app = directory_app("search", LDAP_START_TLS=True, LDAP_CA_FILE=slapd.ca_file)
    assert login(app.test_client(), "sato", password_of("sato")).status_code == 302


@pytest.mark.parametrize("tls", ["ldaps", "start_tls"])
def test_certificate_of_another_ca_is_refused_before_the_password_is_sent(directory_app, slapd,
                                                                         tls):
    settings = {"LDAP_URLS": slapd.ldaps_url} if tls == "ldaps" else {"LDAP_START_TLS": True}
    app = directory_app(LDAP_CA_FILE=slapd.other_ca_file, **settings)
    response = login(app.test_client(), "sato", password_of("sato"))
    assert DIRECTORY_UNAVAILABLE in page(response)


def test_certificate_that_does_not_name_the_host_is_refused(directory_app, slapd):
    port = slapd.ldaps_url.rsplit(":", 1)[1]  # the certificate names 127.0.0.1 only
    app = directory_app(LDAP_URLS=f"ldaps://localhost:{port}", LDAP_CA_FILE=slapd.ca_file)
    assert DIRECTORY_UNAVAILABLE in page(login(app.test_client(), "sato", password_of("sato")))


def test_wrong_service_account_password_is_reported_as_the_directory_unusable(directory_app):
    app = directory_app("search", LDAP_BIND_PASSWORD="not-the-service-password")
    assert DIRECTORY_UNAVAILABLE in page(login(app.test_client(), "sato", password_of("sato")))


def test_without_a_directory_a_roster_account_has_no_password_to_sign_in_with(data_dir):
    app = make_app(data_dir)
    with app.app_context():
        roster.import_staff(get_db(), users.SYSTEM, ROSTER, managers=frozenset())
    for password in ("", "anything-at-all"):
        assert login(app.test_client(), "10001", password).status_code == 200


@pytest.mark.parametrize("settings, problem", [
    ({"LDAP_URLS": "ldap://dc1"}, "KB_LDAP_SEARCH_BASE"),
    ({"LDAP_URLS": "http://dc1", "LDAP_BIND_TEMPLATE": "{login}@ward.local",
      "LDAP_MATCH_ATTRIBUTE": ""}, "ldap://"),
    ({"LDAP_URLS": "ldap://dc1", "LDAP_BIND_TEMPLATE": "uid=x,dc=jp"}, "{login}"),
    ({"LDAP_URLS": "ldap://dc1", "LDAP_BIND_TEMPLATE": "{login}@ward.local"},
     "KB_LDAP_MATCH_ATTRIBUTE"),
    ({"LDAP_URLS": "ldaps://dc1", "LDAP_START_TLS": True, "LDAP_SEARCH_BASE": "dc=jp"},
     "KB_LDAP_START_TLS"),
    ({"LDAP_URLS": "ldap://dc1", "LDAP_SEARCH_BASE": "dc=jp", "LDAP_MATCH_COLUMN": "email"},
     "KB_LDAP_MATCH_COLUMN"),
    ({"LDAP_URLS": "ldaps://dc1", "LDAP_SEARCH_BASE": "dc=jp", "LDAP_CA_FILE": "/nowhere.pem"},
     "KB_LDAP_CA_FILE"),
])
def test_directory_settings_that_cannot_work_stop_the_app(tmp_path, settings, problem):
    with pytest.raises(directory.DirectoryMisconfigured, match=problem):
        create_app({"TESTING": True, "DATA_DIR": str(tmp_path), **settings})


def test_no_directory_by_default(tmp_path):
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path)})
    assert directory.directory_settings(app.config) is None
