"""A real OpenLDAP server (Debian's slapd) for the directory sign-in tests.

``running_slapd`` writes a throwaway slapd.conf (mdb backend, suffix dc=example,dc=jp,
schemas core/cosine/inetorgperson), a test CA and a server certificate for 127.0.0.1,
starts slapd in the foreground on free loopback ports (ldap:// and ldaps://), loads
``PEOPLE`` as the root DN and stops the server at the end.
"""

import base64
import contextlib
import hashlib
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SUFFIX = "dc=example,dc=jp"
PEOPLE_BASE = f"ou=people,{SUFFIX}"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PASSWORD = "root-secret-for-tests"
SERVICE_DN = f"cn=kb-search,ou=services,{SUFFIX}"
SERVICE_PASSWORD = "service-secret-for-tests"
SCHEMA_DIR = Path("/etc/ldap/schema")

# uid → (employeeNumber or None, password)
PEOPLE = {
    "sato": ("10001", "sato-directory-password"),
    "suzuki": ("10002", "suzuki-directory-password"),
    "tanaka": ("99999", "tanaka-directory-password"),
    "takahashi": (None, "takahashi-directory-password"),
    "kb-admin": ("50000", "admin-in-the-directory"),
}


@dataclass(frozen=True)
class Slapd:
    ldap_url: str
    ldaps_url: str
    ca_file: str
    other_ca_file: str  # a CA that did not sign the server's certificate


def slapd_executable() -> str | None:
    return shutil.which("slapd") or next(
        (path for path in ("/usr/sbin/slapd",) if os.access(path, os.X_OK)), None)


def ssha(password: str) -> str:
    """An RFC 2307 {SSHA} hash, as slappasswd makes it."""
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode("utf-8") + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode("ascii")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def silent_port():
    """A loopback port that accepts connections and never answers (a hung server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)  # the kernel completes the handshake; nobody ever reads
        yield sock.getsockname()[1]


def raw_simple_bind(port: int, dn: str, password: str) -> int:
    """Send an LDAPv3 simple bind by hand and return its result code (0: success).

    ldap3 itself refuses an empty password, so this shows what the server would do with
    one from a client that does not (short DNs and passwords only: one-byte lengths).
    """
    def tlv(tag: int, value: bytes) -> bytes:
        assert len(value) < 128
        return bytes([tag, len(value)]) + value

    bind = tlv(0x60, tlv(0x02, b"\x03") + tlv(0x04, dn.encode()) + tlv(0x80, password.encode()))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(tlv(0x30, tlv(0x02, b"\x01") + bind))
        answer = sock.recv(1024)
    # SEQUENCE { messageID, BindResponse [APPLICATION 1] { ENUMERATED resultCode, … } }
    position = 2 + 2 + answer[3]  # past the SEQUENCE header and the message id
    assert answer[position] == 0x61 and answer[position + 2] == 0x0A, answer
    return answer[position + 4]


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_certificates(folder: Path) -> None:
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", *key, "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2",
                 "-subj", f"/CN=hiyari-kb test {ca}", cwd=folder)
    _openssl("req", *key, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1",
             cwd=folder)
    (folder / "server.ext").write_text(
        "subjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\n"
        "keyUsage = digitalSignature, keyEncipherment\nextendedKeyUsage = serverAuth\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext",
             cwd=folder)


def _write_config(folder: Path) -> Path:
    (folder / "db").mkdir()
    config = folder / "slapd.conf"
    config.write_text(f"""\
include {SCHEMA_DIR}/core.schema
include {SCHEMA_DIR}/cosine.schema
include {SCHEMA_DIR}/inetorgperson.schema
pidfile {folder}/slapd.pid
argsfile {folder}/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
TLSCACertificateFile {folder}/ca.pem
TLSCertificateFile {folder}/server.pem
TLSCertificateKeyFile {folder}/server.key
# As some Active Directory setups do: a DN with an empty password binds, anonymously.
allow bind_anon_dn

database mdb
maxsize 10485760
suffix "{SUFFIX}"
rootdn "{ROOT_DN}"
rootpw {ssha(ROOT_PASSWORD)}
directory {folder}/db
# Like a real directory: passwords only for binding, nothing for anonymous readers.
access to attrs=userPassword by anonymous auth by self write by * none
access to * by users read by * none
""")
    return config


def _wait_for_port(process, port: int, log: Path, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"slapd exited with {process.returncode}:\n{log.read_text()}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"slapd did not listen on {port} within {seconds} s:\n{log.read_text()}")


def _load_people(ldap_url: str) -> None:
    from ldap3 import Connection, Server

    connection = Connection(Server(ldap_url), ROOT_DN, ROOT_PASSWORD, auto_bind=True)
    try:
        entries = [
            (SUFFIX, ["dcObject", "organization"], {"dc": "example", "o": "Example Ward"}),
            (PEOPLE_BASE, ["organizationalUnit"], {"ou": "people"}),
            (f"ou=services,{SUFFIX}", ["organizationalUnit"], {"ou": "services"}),
            (SERVICE_DN, ["organizationalRole", "simpleSecurityObject"],
             {"cn": "kb-search", "userPassword": ssha(SERVICE_PASSWORD)}),
        ]
        for uid, (number, password) in PEOPLE.items():
            attributes = {"uid": uid, "cn": uid, "sn": uid, "userPassword": ssha(password)}
            if number:
                attributes["employeeNumber"] = number
            entries.append((f"uid={uid},{PEOPLE_BASE}", ["inetOrgPerson"], attributes))
        for dn, classes, attributes in entries:
            if not connection.add(dn, classes, attributes):
                raise RuntimeError(f"adding {dn}: {connection.result}")
    finally:
        connection.unbind()


@contextlib.contextmanager
def running_slapd(folder: Path):
    """Start slapd with a fresh configuration in ``folder``; yield a Slapd; stop it."""
    executable = slapd_executable()
    if executable is None:
        raise FileNotFoundError("slapd")
    _make_certificates(folder)
    config = _write_config(folder)
    ldap_port, ldaps_port = free_port(), free_port()
    ldap_url, ldaps_url = f"ldap://127.0.0.1:{ldap_port}", f"ldaps://127.0.0.1:{ldaps_port}"
    log = folder / "slapd.log"
    with open(log, "wb") as output:
        # -d 0: stay in the foreground (so the process is ours to stop) without debug output.
        process = subprocess.Popen(
            [executable, "-f", str(config), "-h", f"{ldap_url}/ {ldaps_url}/", "-d", "0"],
            stdout=output, stderr=subprocess.STDOUT)
    try:
        _wait_for_port(process, ldap_port, log)
        _wait_for_port(process, ldaps_port, log)
        _load_people(ldap_url)
        yield Slapd(ldap_url, ldaps_url, str(folder / "ca.pem"), str(folder / "other-ca.pem"))
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
