import pytest

from kb import config, create_app
from kb.security import InsecureSecretKey


def test_defaults_are_used_without_overrides(tmp_path):
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path)})
    assert app.config["PORT"] == 5000
    assert app.config["LOGIN_RATE_LIMIT"] == "10 per minute"
    assert app.config["SESSION_COOKIE_SECURE"] is False


def test_environment_overrides_defaults_with_the_defaults_type(monkeypatch, tmp_path):
    monkeypatch.setenv("KB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KB_PORT", "8123")
    monkeypatch.setenv("KB_SESSION_COOKIE_SECURE", "true")
    app = create_app({"TESTING": True})
    assert app.config["DATA_DIR"] == str(tmp_path)
    assert app.config["PORT"] == 8123
    assert app.config["SESSION_COOKIE_SECURE"] is True


def test_test_config_wins_over_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("KB_PAGE_SIZE", "5")
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path), "PAGE_SIZE": 7})
    assert app.config["PAGE_SIZE"] == 7


@pytest.mark.parametrize("name, value", [("KB_PORT", "eighty"), ("KB_SESSION_COOKIE_SECURE", "maybe")])
def test_malformed_environment_value_is_refused_with_its_name(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=name):
        config.from_environment()


def test_app_refuses_to_start_with_the_placeholder_secret(tmp_path):
    with pytest.raises(InsecureSecretKey):
        create_app({"DATA_DIR": str(tmp_path)})


def test_app_starts_in_testing_with_the_placeholder_secret(tmp_path):
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path)})
    assert app.config["SECRET_KEY"] == config.PLACEHOLDER_SECRET


def test_debug_mode_may_use_the_placeholder(monkeypatch, tmp_path):
    monkeypatch.setenv("FLASK_DEBUG", "1")
    assert create_app({"DATA_DIR": str(tmp_path)}).debug


def test_secret_key_is_read_from_the_data_folder(tmp_path):
    (tmp_path / "secret_key").write_text("from-the-file\n", encoding="ascii")
    app = create_app({"DATA_DIR": str(tmp_path)})
    assert app.config["SECRET_KEY"] == "from-the-file"


def test_environment_secret_wins_over_the_file(monkeypatch, tmp_path):
    (tmp_path / "secret_key").write_text("from-the-file", encoding="ascii")
    monkeypatch.setenv("KB_SECRET_KEY", "from-the-environment")
    app = create_app({"DATA_DIR": str(tmp_path)})
    assert app.config["SECRET_KEY"] == "from-the-environment"
