"""The README is part of the product: every command, setting and module is documented."""

import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import click
import pytest

from kb import cli, config

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_quick_start_is_exactly_the_two_commands():
    quick_start = README.split("## Quick start", 1)[1].split("```")[1]
    assert quick_start.split() == ["scripts/run", "scripts/test"]


@pytest.mark.parametrize("command", cli.COMMANDS, ids=lambda c: c.name)
def test_every_command_is_documented(command):
    assert f"flask --app wsgi {command.name}" in README


@pytest.mark.parametrize("name", sorted(config.defaults()))
def test_every_setting_is_documented(name):
    assert f"`KB_{name}`" in README


@pytest.mark.parametrize("module", sorted(
    str(path.relative_to(ROOT)) for path in (ROOT / "kb").rglob("*.py")))
def test_every_module_is_in_the_layout(module):
    layout = README.split("## Layout", 1)[1]
    assert f"\n{module} " in layout


def test_ci_runs_the_readme_test_command():
    assert "scripts/test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


# --- The Japanese guides (docs/ja/) and the deployment examples (deploy/) -----------------
# What an operator copies from a guide must work: every command and option exists, every
# setting is read by kb/config.py, every file of the repository it names is there, and the
# example unit files and nginx configuration pass their own tools' checks where installed.

GUIDES_DIR = ROOT / "docs" / "ja"
GUIDES = sorted(GUIDES_DIR.glob("*.md"))
OPERATIONS_GUIDE = GUIDES_DIR / "運用の手引き.md"
USER_GUIDE = GUIDES_DIR / "利用の手引き.md"
SCREENSHOTS_DIR = ROOT / "docs" / "screenshots"
BROWSER_TESTS = ROOT / "tests" / "test_browser.py"
DEPLOY_DIR = ROOT / "deploy"
UNIT_FILES = sorted((DEPLOY_DIR / "systemd").glob("*.*"))
NGINX_SITE = DEPLOY_DIR / "nginx" / "hiyari-kb.conf"
ENV_EXAMPLE = DEPLOY_DIR / "env.example"

# An invocation ends where a code span, a line or a shell command ends.
INVOCATION = re.compile(r"flask --app wsgi ([a-z][a-z-]*)([^`\n|;&]*)")
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z-]*)")
SETTING = re.compile(r"\bKB_[A-Z0-9_]*[A-Z0-9]\b")
REPO_PATH = re.compile(r"(?<![\w./~-])((?:deploy|scripts|docs|kb|templates|tests|data/seed)/"
                       r"[\w./\-]*[\w/])")
LINK = re.compile(r"\]\(([^)\s]+)\)")
# An image, as Markdown or as an <img> (which a guide uses to show a phone screen smaller).
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)|<img\s[^>]*\bsrc=\"([^\"]+)\"")


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _invocations(paths) -> list[tuple[str, str, str]]:
    """(file name, command, option) for every `flask --app wsgi …` in ``paths``; the
    option is "" for the command itself."""
    found = []
    for path in paths:
        for name, rest in INVOCATION.findall(_text(path)):
            found.append((path.name, name, ""))
            found += [(path.name, name, option) for option in OPTION.findall(rest)]
    return found


def _options(command) -> set[str]:
    return {"--help"} | {opt for param in command.params if isinstance(param, click.Option)
                         for opt in param.opts + param.secondary_opts}


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation (ASCII and full-width)
    dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_operations_guide_and_the_index_exist():
    assert OPERATIONS_GUIDE.is_file()
    assert USER_GUIDE.is_file()
    assert (GUIDES_DIR / "README.md").is_file()


def test_the_readme_links_every_guide_at_the_top():
    top = README.split("\n## ", 1)[0]
    assert "](docs/ja/README.md)" in top
    for guide in GUIDES:
        if guide.name != "README.md":
            assert f"](docs/ja/{guide.name})" in top, guide.name


def test_the_guide_index_links_both_guides():
    index = _text(GUIDES_DIR / "README.md")
    assert "](運用の手引き.md)" in index
    assert "](利用の手引き.md)" in index


@pytest.mark.parametrize("where, name, option",
                         _invocations(GUIDES + UNIT_FILES + [ENV_EXAMPLE]),
                         ids=lambda value: value or "-")
def test_every_command_and_option_in_the_guides_exists(where, name, option):
    commands = {command.name: command for command in cli.COMMANDS}
    assert name in commands, f"{where}: no command {name!r}"
    if option:
        assert option in _options(commands[name]), f"{where}: {name} has no {option}"


def test_the_guides_name_commands_at_all():
    # Guards the scan above: were the pattern to stop matching, every check would pass.
    names = {name for _, name, _ in _invocations([OPERATIONS_GUIDE])}
    assert {"init", "create-user", "backup", "restore", "reindex", "import-staff",
            "send-mail"} <= names


@pytest.mark.parametrize("where, setting", sorted(
    {(path.name, setting) for path in GUIDES + UNIT_FILES + [ENV_EXAMPLE]
     for setting in SETTING.findall(_text(path))}))
def test_every_setting_in_the_guides_and_examples_exists(where, setting):
    assert setting.removeprefix("KB_") in config.defaults(), f"{where}: unknown {setting}"


@pytest.mark.parametrize("name", sorted(config.defaults()))
def test_every_setting_is_in_the_operations_guide_table(name):
    assert f"\n| `KB_{name}` |" in _text(OPERATIONS_GUIDE)


@pytest.mark.parametrize("where, path", sorted(
    {(guide.name, path) for guide in GUIDES for path in REPO_PATH.findall(_text(guide))}))
def test_every_repository_file_the_guides_name_exists(where, path):
    assert (ROOT / path).exists(), f"{where} names {path}, which is not in the repository"


def test_the_guides_name_the_deploy_examples():
    named = {path for guide in GUIDES for path in REPO_PATH.findall(_text(guide))}
    examples = {str(path.relative_to(ROOT)) for path in UNIT_FILES + [NGINX_SITE, ENV_EXAMPLE]}
    assert examples <= named


@pytest.mark.parametrize("where, target", sorted(
    {(guide.name, target) for guide in GUIDES for target in LINK.findall(_text(guide))
     if "://" not in target}))
def test_every_link_in_the_guides_leads_somewhere(where, target):
    path, _, anchor = target.partition("#")
    document = (GUIDES_DIR / where) if not path else (GUIDES_DIR / path).resolve()
    assert document.exists(), f"{where}: {target}"
    if anchor:
        headings = re.findall(r"^#+ (.+)$", _text(document), flags=re.M)
        assert anchor in {_slug(heading) for heading in headings}, f"{where}: {target}"


def _images(path: Path) -> list[str]:
    return [markdown or html for markdown, html in IMAGE.findall(_text(path))]


@pytest.mark.parametrize("where, image", sorted(
    {(guide.name, image) for guide in GUIDES for image in _images(guide)}))
def test_every_image_in_the_guides_exists_and_a_browser_test_takes_it(where, image):
    # "Screenshots current": a screenshot a guide shows is one a browser journey takes (and
    # so fails to take when its page breaks), not a picture saved once by hand.
    assert "://" not in image, f"{where}: {image} is not in the repository"
    path = (GUIDES_DIR / image).resolve()
    assert path.is_file(), f"{where}: {image} does not exist"
    if path.parent == SCREENSHOTS_DIR:
        assert f'"{path.name}"' in _text(BROWSER_TESTS), \
            f"{where}: no test in tests/test_browser.py writes {path.name}"


def test_the_user_guide_covers_every_reader_with_screenshots():
    # Guards the scan above (were the pattern to stop matching, every check would pass) and
    # the guide's promise: a section per reader, each with the pages they use.
    guide = _text(USER_GUIDE)
    sections = re.split(r"^## ", guide, flags=re.M)[1:]
    readers = {section.split("\n", 1)[0].strip(): section for section in sections}
    assert set(readers) == {"職員", "所属長", "情報管理担当", "研修担当"}
    for reader, section in readers.items():
        assert any(IMAGE.finditer(section)), f"{reader}: no screenshot"
    shown = {Path(image).name for image in _images(USER_GUIDE)}
    assert {"guide-search-vocabulary.png", "guide-search-log.png", "guide-vocabulary.png",
            "guide-sharing-export.png", "guide-selfcheck-manage.png",
            "guide-reviewer-queue.png"} <= shown


def _substitute_for_checking(text: str) -> str:
    # The examples name the server's paths; for the checks the program must exist, so the
    # virtual environment running these tests stands in for /srv/hiyari-kb/.venv.
    return text.replace("/srv/hiyari-kb/.venv/bin", str(Path(sys.executable).parent))


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed")
def test_the_example_unit_files_pass_systemd_analyze_verify(tmp_path):
    copies = []
    for unit in UNIT_FILES:
        copy = tmp_path / unit.name
        copy.write_text(_substitute_for_checking(_text(unit)), encoding="utf-8")
        copies.append(str(copy))
    result = subprocess.run(["systemd-analyze", "verify", *copies], capture_output=True,
                            text=True, timeout=60)
    output = result.stdout + result.stderr
    # Unknown keys and sections are only warnings (exit 0): each names its unit.
    complaints = [line for line in output.splitlines()
                  if any(unit.name in line for unit in UNIT_FILES)]
    assert result.returncode == 0 and not complaints, output


def test_the_service_runs_serve_as_its_own_user_with_the_hardening():
    unit = _text(DEPLOY_DIR / "systemd" / "hiyari-kb.service")
    for line in ("User=hiyari-kb", "ProtectSystem=strict", "ReadWritePaths=/var/lib/hiyari-kb",
                 "NoNewPrivileges=yes", "PrivateTmp=yes", "EnvironmentFile=/etc/hiyari-kb/env",
                 "Restart=on-failure", "ExecStart=/srv/hiyari-kb/.venv/bin/flask --app wsgi serve"):
        assert f"\n{line}\n" in unit, line
    env = _text(ENV_EXAMPLE)
    assert "\nKB_DATA_DIR=/var/lib/hiyari-kb\n" in env  # the folder the unit may write


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.skipif(shutil.which("nginx") is None or shutil.which("openssl") is None,
                    reason="nginx (or openssl, for a throwaway certificate) is not installed")
def test_the_example_nginx_configuration_passes_nginx_t(tmp_path):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=kb.ward.example.jp", "-keyout", str(tmp_path / "key.pem"),
                    "-out", str(tmp_path / "cert.pem")], check=True, capture_output=True,
                   timeout=60)
    site = (_text(NGINX_SITE)
            .replace("/etc/ssl/hiyari-kb/fullchain.pem", str(tmp_path / "cert.pem"))
            .replace("/etc/ssl/hiyari-kb/privkey.pem", str(tmp_path / "key.pem"))
            .replace("/var/log/nginx/", f"{tmp_path}/"))
    # nginx -t binds the listening sockets: free loopback ports instead of 80 and 443 (which
    # need root), and no IPv6 (a test machine may have none).
    site = re.sub(r"\n *listen \[::\]:[^\n]*", "", site)
    ports = {}
    site = re.sub(r"listen (\d+)",
                  lambda m: f"listen 127.0.0.1:{ports.setdefault(m[1], _free_port())}", site)
    (tmp_path / "site.conf").write_text(site, encoding="utf-8")
    temp_paths = "".join(f"    {kind}_temp_path {tmp_path}/{kind};\n"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n{temp_paths}    access_log {tmp_path}/access.log;\n"
        f"    include {tmp_path}/site.conf;\n}}\n", encoding="utf-8")
    result = subprocess.run(["nginx", "-t", "-c", str(tmp_path / "nginx.conf"),
                             "-p", str(tmp_path), "-e", str(tmp_path / "error.log")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_the_nginx_example_forwards_what_the_proxy_settings_read():
    site = _text(NGINX_SITE)
    assert "proxy_pass http://127.0.0.1:5000;" in site  # KB_HOST and KB_PORT of env.example
    assert "X-Forwarded-For $proxy_add_x_forwarded_for;" in site  # KB_TRUSTED_PROXIES=1
    assert "X-Forwarded-Proto $scheme;" in site
    env = _text(ENV_EXAMPLE)
    for line in ("KB_HOST=127.0.0.1", "KB_PORT=5000", "KB_TRUSTED_PROXIES=1",
                 "KB_SESSION_COOKIE_SECURE=true"):
        assert f"\n{line}\n" in env, line
