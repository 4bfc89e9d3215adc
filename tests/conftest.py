"""The real app on a throwaway data folder, with small builders.

A seeded database (migrations, departments, checklist, the 180 external cases) is built
once per session by the real `init` command and copied into each test's own folder.
"""

import re
import shutil

import pytest

from kb import create_app, search, users
from kb.db import DATABASE_FILE, database_path, get_db

PASSWORD = "correct-horse-battery"
TEST_SECRET = "test-secret-not-for-production"


def make_app(data_dir, **overrides):
    return create_app({"TESTING": True, "DATA_DIR": str(data_dir), "SECRET_KEY": TEST_SECRET,
                       **overrides})


@pytest.fixture(scope="session")
def seeded_db_file(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("seeded")
    result = make_app(data_dir).test_cli_runner().invoke(args=["init"])
    assert result.exit_code == 0, result.output
    return database_path(data_dir)


@pytest.fixture
def data_dir(tmp_path, seeded_db_file):
    """A data folder with the seeded database and its search index."""
    shutil.copy(seeded_db_file, tmp_path / DATABASE_FILE)
    index = search.index_path(seeded_db_file.parent)
    shutil.copytree(index, search.index_path(tmp_path))
    return tmp_path


@pytest.fixture
def app(data_dir):
    return make_app(data_dir)


@pytest.fixture
def db(app):
    with app.app_context():
        yield get_db()


@pytest.fixture
def client(app):
    return app.test_client()


def add_user(app, login, *roles, department="kumin-koseki", active=True):
    """Create an account in ``app``: add_user(app, "taro", "staff", department=…)."""
    with app.app_context():
        db = get_db()
        department_id = users.get_department_by_code(db, department)["department_id"]
        user = users.create_user(db, users.SYSTEM, login=login, display_name=f"{login} さん",
                                 department_id=department_id, roles=roles or ("staff",),
                                 password=PASSWORD)
        if not active:
            user = users.update_user(db, users.SYSTEM, user.user_id,
                                     display_name=user.display_name,
                                     department_id=department_id, roles=user.roles,
                                     active=False)
        return user


@pytest.fixture
def make_user(app):
    """Create an account: make_user("taro", "staff", department="kumin-koseki")."""
    return lambda login, *roles, **options: add_user(app, login, *roles, **options)


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def login(client, login_id, password=PASSWORD, next_url=None):
    token = csrf_token(client.get("/login").get_data(as_text=True))
    data = {"csrf_token": token, "login": login_id, "password": password}
    if next_url is not None:
        data["next"] = next_url
    return client.post("/login", data=data)


def post_form(client, url, data):
    """POST a form the way a browser does: with the CSRF token of the page it was on, and
    the version of the record the page shows (its hidden ``version``) unless given."""
    html = client.get(url).get_data(as_text=True)
    hidden = {"csrf_token": csrf_token(html)}
    version = re.search(r'name="version"[^>]*value="([^"]*)"', html)
    if version:
        hidden["version"] = version.group(1)
    return client.post(url, data={**hidden, **data})


@pytest.fixture
def signed_in(client, make_user):
    """A client signed in as a new user with the given roles."""

    def sign_in(*roles, login_id=None, department="kumin-koseki"):
        login_id = login_id or "-".join(roles or ("staff",)) + "-user"
        user = make_user(login_id, *roles, department=department)
        response = login(client, login_id)
        assert response.status_code == 302, response.get_data(as_text=True)
        return user

    return sign_in
