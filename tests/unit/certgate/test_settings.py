from __future__ import annotations

from pathlib import Path

import pytest

from certgate.errors import ConfigError
from certgate.settings import load_settings, parse_settings

REPO = Path(__file__).resolve().parents[3]


def parse(text: str, tmp_path: Path):
    import tomllib

    return parse_settings(tomllib.loads(text), tmp_path / "c.toml")


MINIMAL = """
[[radius.clients]]
name = "wlc"
address = "10.0.0.0/24"
secret = "0123456789"
[groups.staff]
"""


def test_example_config_is_valid() -> None:
    s = load_settings(REPO / "config" / "certgate.example.toml")
    assert [g.name for g in s.groups] == ["staff", "guests"]
    assert s.radius.listen.port == 1812
    assert s.group("staff").vlan == "10"


def test_defaults_resolve_under_data_dir(tmp_path: Path) -> None:
    s = parse(MINIMAL, tmp_path)
    assert s.storage.path == tmp_path / "var" / "certgate.sqlite"
    assert s.pki.dir == tmp_path / "var" / "pki"
    assert s.radius.tls_groups == ("X25519", "P-256")
    assert s.radius.resumption is False
    assert s.http.public_url == "http://127.0.0.1:8080"


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("[radius]\nlisten = 'localhost'\n", "radius.listen: expected \"IP:PORT\""),
        ("[radius]\nfragment_size = 10\n", "radius.fragment_size: expected an integer between"),
        ("[radius]\nmax_conversations = 10\nmax_conversations_per_client = 11\n",
         "radius.max_conversations_per_client: must be at most max_conversations"),
        ("[radius]\nmax_buffered_bytes = 1000\n",
         "radius.max_buffered_bytes: expected an integer between 131072"),
        ("[radius]\nlsten = '1.2.3.4:1'\n", "radius.lsten: unknown key"),
        ("[groups.staff]\nvlan = 5000\n", "groups.staff.vlan: expected a VLAN id"),
        ("[groups.staff]\nkey_types = ['dsa-1024']\n", "groups.staff.key_types: unknown value"),
        ("[groups.staff]\nchallenge_modes = ['static']\n", "groups.staff.static_secret: required"),
        ("[http]\npublic_url = 'ftp://x'\n", "http.public_url: expected an http(s) URL"),
        ("[http]\nmetrics_token = 'short'\n", "http.metrics_token: must be at least 16"),
        ("[http]\nmetrics_token_env = 'CG_NO_SUCH_VAR'\n", "http.metrics_token_env: environment"),
        ("[admin]\ntokens = ['short']\n", "admin.tokens: each admin token must be at least"),
        ("[pki]\nkey_type = 'ed25519'\n", "pki.key_type: expected one of"),
        ("[radius]\ntls_min_version = '1.3'\ntls_max_version = '1.2'\n",
         "radius.tls_min_version: 1.3 is above"),
        ("[groups.'Bad Name']\n", "groups.Bad Name: group names are"),
        ("[server]\nlog_format = 'xml'\n", "server.log_format: expected one of text, json"),
        ("[groups.staff.scep]\nciphers = ['aes256', 'rc2']\n",
         "groups.staff.scep.ciphers: unknown cipher ['rc2']; expected any of aes256, aes192, "
         "aes128, des3, des"),
        ("[groups.staff.scep]\ndigests = ['sha3']\n",
         "groups.staff.scep.digests: unknown digest ['sha3']; expected any of sha512"),
        ("[groups.staff.scep]\ndigests = ['sha256', 'md5']\n",
         "groups.staff.scep.digests: md5 is never accepted"),
        ("[groups.staff.scep]\nciphers = []\n", "groups.staff.scep.ciphers: expected a non-empty"),
        ("[groups.staff.scep]\ncipher = ['aes128']\n", "groups.staff.scep.cipher: unknown key"),
        ("[groups.staff]\nlegacy_algorithms = true\n[groups.staff.scep]\ndigests = ['sha1']\n",
         "groups.staff.legacy_algorithms: give either legacy_algorithms or [groups.staff.scep]"),
    ],
)
def test_errors_name_the_key_and_the_fix(tmp_path: Path, snippet: str, expected: str) -> None:
    text = MINIMAL.replace("[groups.staff]\n", "") + snippet
    if "[groups." not in snippet:
        text += "[groups.staff]\n"
    with pytest.raises(ConfigError) as err:
        parse(text, tmp_path)
    assert any(d.startswith(expected) for d in err.value.details), err.value.details


def test_client_errors_are_indexed(tmp_path: Path) -> None:
    text = """
[[radius.clients]]
name = "a"
address = "not-an-ip"
secret = "short"
[groups.staff]
"""
    with pytest.raises(ConfigError) as err:
        parse(text, tmp_path)
    joined = "\n".join(err.value.details)
    assert "radius.clients[0].address: expected an IP address or CIDR" in joined
    assert "radius.clients[0].secret: must be at least 8 characters" in joined


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        parse("[radius]\nfoo = 1\n[http]\nbar = 2\n", tmp_path)
    assert len(err.value.details) >= 3  # two unknown keys + no groups


def test_secret_from_env_and_missing_env(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WLC_SECRET", "from-environment-123")
    text = MINIMAL.replace('secret = "0123456789"', 'secret_env = "WLC_SECRET"')
    assert parse(text, tmp_path).radius.clients[0].secret == "from-environment-123"
    monkeypatch.delenv("WLC_SECRET")
    with pytest.raises(ConfigError, match="WLC_SECRET is not set"):
        parse(text, tmp_path)


def test_unreadable_and_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[radius\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad)


def test_integer_literal_past_python_digit_limit_is_a_config_error(tmp_path: Path) -> None:
    """tomllib raises a bare ValueError (not TOMLDecodeError) for an integer literal
    past Python's 4300-digit int() limit: it escaped load_settings as a traceback.
    Found by tests/fuzz/fuzz_config.py."""
    bad = tmp_path / "big.toml"
    bad.write_text("[radius]\nfragment_size = " + "9" * 5000 + "\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad)


@pytest.mark.parametrize("target", ["fifo", "/dev/zero", "dir"])
def test_referenced_files_must_be_small_regular_files(tmp_path: Path, target: str) -> None:
    """A token_file / secret_file / mdm_blob_keys entry naming a FIFO blocked start-up
    forever, /dev/zero read without end (found by tests/fuzz/fuzz_config.py); now each
    is a config error naming its key."""
    import os

    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    path = target if target.startswith("/") else str(tmp_path / target)
    text = MINIMAL.replace('secret = "0123456789"', f'secret_file = "{path}"')
    text += f'[admin]\ntoken_file = "{path}"\n[scep]\nmdm_blob_keys = ["{path}"]\n'
    with pytest.raises(ConfigError) as caught:
        parse(text, tmp_path)
    details = "\n".join(caught.value.details)
    for key in ("radius.clients[0].secret_file", "admin.token_file", "scep.mdm_blob_keys[0]"):
        assert f"{key}: cannot read {path}: " in details, details
    big = tmp_path / "big"
    big.write_bytes(b"x" * ((1 << 20) + 1))
    with pytest.raises(ConfigError, match=r"admin.token_file: cannot read .*larger than"):
        parse(MINIMAL + f'[admin]\ntoken_file = "{big}"\n', tmp_path)


def test_error_report_is_one_line_per_problem_and_bounded(tmp_path: Path) -> None:
    """A pasted megabyte value was echoed whole, and a newline in a key, a group name
    or a variable name split a problem over lines (found by tests/fuzz/fuzz_config.py):
    values are cut to 80 characters, control characters escaped, each detail bounded."""
    text = MINIMAL + '[radius]\nlisten = "' + "x" * 1_000_000 + '"\n'
    text += '[groups."a\\nb"]\n["k\\u2028\\r"]\n'
    with pytest.raises(ConfigError) as caught:
        parse(text, tmp_path)
    details = caught.value.details
    assert len(str(caught.value)) < 2000
    assert any(d.startswith("radius.listen: expected \"IP:PORT\"") and "(1000002 characters)" in d
               for d in details), details
    assert "groups.a\\x0ab: group names are 1-32" in "\n".join(details)
    assert "k\\u2028\\x0d: unknown key" in "\n".join(details)
    assert all("\n" not in d and "\r" not in d and len(d) <= 430 for d in details)


def test_nul_in_a_path_is_a_config_error(tmp_path: Path) -> None:
    """A NUL in a path made os.path.expanduser / os.open raise ValueError out of
    parse_settings (found by tests/fuzz/fuzz_config.py)."""
    text = MINIMAL.replace('secret = "0123456789"', 'secret_file = "a\\u0000b"')
    text += '[pki]\ndir = "x\\u0000y"\n[admin]\ntoken_file = "t\\u0000"\n'
    text += '[scep]\nmdm_blob_keys = ["k\\u0000"]\n'
    with pytest.raises(ConfigError) as caught:
        parse(text, tmp_path)
    details = "\n".join(caught.value.details)
    for key in ("pki.dir", "admin.token_file", "scep.mdm_blob_keys[0]", "radius.clients[0].secret_file"):
        assert f"{key}: " in details and "NUL character" in details, details


def test_relative_secret_files_resolve_against_the_config_directory(tmp_path: Path,
                                                                     monkeypatch) -> None:
    """`secret_file = "x"` was read relative to the working directory (it worked from
    /etc/certgate, failed under systemd); every other relative path resolves against the
    config file's directory, and now this one does too."""
    (tmp_path / "wlc.secret").write_text("secret-from-a-file\n")
    monkeypatch.chdir("/")
    text = MINIMAL.replace('secret = "0123456789"', 'secret_file = "wlc.secret"')
    assert parse(text, tmp_path).radius.clients[0].secret == "secret-from-a-file"


def test_scep_section_per_key_errors(tmp_path) -> None:
    import pytest as _pytest
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from certgate.errors import ConfigError
    from certgate.settings import load_settings
    from tests.support import write_config

    good = ec.generate_private_key(ec.SECP256R1()).public_key()
    bad = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    pem = serialization.Encoding.PEM
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    cg = tmp_path / "cg"
    cg.mkdir()
    (cg / "good.pem").write_bytes(good.public_bytes(pem, spki))
    (cg / "rsa.pem").write_bytes(bad.public_bytes(pem, spki))
    config = write_config(cg, extra='\n[scep]\nmdm_blob_keys = ["good.pem"]\n'
                          'signing_time_skew_seconds = 600\n')
    s = load_settings(config)
    assert s.scep.mdm_blob_keys == (cg / "good.pem",) and s.scep.signing_time_skew_seconds == 600
    config = write_config(cg, extra='\n[scep]\nmdm_blob_keys = ["rsa.pem", "missing.pem"]\n'
                          'max_pending_age_days = 0\ntypo = 1\n')
    with _pytest.raises(ConfigError) as err:
        load_settings(config)
    details = "\n".join(err.value.details)
    assert "scep.mdm_blob_keys[0]: " in details and "P-256" in details
    assert "scep.mdm_blob_keys[1]: cannot read" in details
    assert "scep.max_pending_age_days:" in details and "scep.typo: unknown key" in details


def test_storage_defaults_to_sqlite_and_names_the_node(tmp_path: Path) -> None:
    s = parse(MINIMAL, tmp_path)
    assert s.storage.backend == "sqlite" and s.storage.url is None
    assert s.storage.outage_mode == "closed" and s.storage.outage_grace == 900.0
    assert s.server.node_name.endswith(":1812")


def test_storage_url_inline_env_and_file(tmp_path: Path, monkeypatch) -> None:
    url = "postgresql://certgate:s3cret@db.example:5432/certgate"
    s = parse(MINIMAL + f"[storage]\nurl = '{url}'\npool_size = 4\nstatement_cache = false\n", tmp_path)
    assert (s.storage.backend, s.storage.url, s.storage.pool_size) == ("postgresql", url, 4)
    assert s.storage.statement_cache is False
    monkeypatch.setenv("CG_DB", url)
    assert parse(MINIMAL + "[storage]\nurl_env = 'CG_DB'\n", tmp_path).storage.url == url
    (tmp_path / "db.url").write_text(url + "\n")
    assert parse(MINIMAL + f"[storage]\nurl_file = '{tmp_path / 'db.url'}'\n", tmp_path).storage.url == url


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("url = 'mysql://u:pw@h/db'", "storage.url: scheme must be postgresql://"),
        ("url = 'postgresql://u:pw@h:99999/db'", "storage.url: is not a valid URL"),
        ("url = 'postgresql://u:pw@h:5432'", "storage.url: names no database"),
        ("url = 'postgresql://u:pw@h/db'\npath = 'x.sqlite'", "storage.path: give either path"),
        ("url = 'postgresql://u@h/db'\nurl_env = 'X'", "storage.url: give only one of"),
        ("outage_mode = 'maybe'", "storage.outage_mode: expected one of closed, open"),
        ("pool_size = 0", "storage.pool_size: expected an integer between 1"),
        ("urll = 'x'", "storage.urll: unknown key"),
    ],
)
def test_storage_errors_name_the_key_and_never_the_password(tmp_path: Path, snippet: str,
                                                            expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(MINIMAL + "[storage]\n" + snippet + "\n", tmp_path)
    assert any(d.startswith(expected) for d in err.value.details), err.value.details
    assert "pw" not in " ".join(err.value.details).replace("postgresql://", "")


def test_node_name_is_validated(tmp_path: Path) -> None:
    assert parse("[server]\nnode_name = 'radius-a'\n" + MINIMAL, tmp_path).server.node_name == "radius-a"
    with pytest.raises(ConfigError, match="server.node_name"):
        parse("[server]\nnode_name = 'a b\\n'\n" + MINIMAL, tmp_path)


def test_scep_algorithms_defaults_lists_and_legacy_alias(tmp_path: Path) -> None:
    from enrollment.algorithms import DEFAULT_CIPHERS, DEFAULT_DIGESTS, LEGACY_CIPHERS, LEGACY_DIGESTS

    s = parse(MINIMAL, tmp_path)
    g = s.group("staff")
    assert (g.scep_ciphers, g.scep_digests) == (DEFAULT_CIPHERS, DEFAULT_DIGESTS)
    assert g.include_root is True and s.warnings == ()
    assert parse(MINIMAL + "ca_is_ra = true\n", tmp_path).group("staff").include_root is False
    s = parse(MINIMAL + "[groups.staff.scep]\nciphers = ['aes128', 'des3', 'aes128']\n"
              "digests = ['sha256']\n", tmp_path)
    assert s.group("staff").scep_ciphers == ("aes128", "des3")  # duplicates dropped
    assert s.group("staff").scep_digests == ("sha256",) and s.warnings == ()
    s = parse(MINIMAL + "legacy_algorithms = true\n", tmp_path)
    g = s.group("staff")
    assert (g.scep_ciphers, g.scep_digests) == (LEGACY_CIPHERS, LEGACY_DIGESTS)
    (warning,) = s.warnings
    assert warning.startswith("groups.staff.legacy_algorithms: deprecated; it allows des3, des "
                              "and sha1") and "[groups.staff.scep] ciphers" in warning
    s = parse(MINIMAL + "legacy_algorithms = false\n", tmp_path)
    assert s.group("staff").scep_ciphers == DEFAULT_CIPHERS and len(s.warnings) == 1
    s = parse(MINIMAL + "legacy_algorithms = false\ninclude_root = false\n"
              "[groups.staff.scep]\nciphers = ['aes128']\n", tmp_path)  # harmless: a warning
    assert s.group("staff").scep_ciphers == ("aes128",) and len(s.warnings) == 1
    assert s.group("staff").include_root is False


def test_check_config_prints_the_deprecation_warning(tmp_path: Path, capsys) -> None:
    from certgate.cli import main

    config = tmp_path / "c.toml"
    config.write_text(MINIMAL + "legacy_algorithms = true\n")
    assert main(["--config", str(config), "check-config", "--no-state"]) == 0
    err = capsys.readouterr().err
    assert "certgate: warning: groups.staff.legacy_algorithms: deprecated" in err


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("[groups.staff]\nquarantine_vlan = 4095\n",
         "groups.staff.quarantine_vlan: expected a VLAN id between 1 and 4094, got 4095"),
        ("[groups.staff]\nquarantine_vlan = '0'\n",
         "groups.staff.quarantine_vlan: expected a VLAN id between 1 and 4094"),
        ("[groups.staff]\nquarantine_vlan = ''\n", "groups.staff.quarantine_vlan: expected a VLAN"),
        ("[groups.staff]\nquarantine_vlan = true\n", "groups.staff.quarantine_vlan: expected"),
        ("[groups.staff]\nvlan = 10\nquarantine_vlan = '10'\n",
         "groups.staff.quarantine_vlan: is the group's own vlan (10)"),
        ("[groups.staff]\nfilter_id = 'a'\nquarantine_filter_id = 'a'\n",
         "groups.staff.quarantine_filter_id: is the group's own filter_id"),
        ("[groups.staff]\nquarantine_filter_id = 3\n",
         "groups.staff.quarantine_filter_id: expected a string"),
        ("[radius]\ncoa_source = 'nas.example'\n", "radius.coa_source: expected an IP address"),
        ("[radius]\ncoa_source = '0.0.0.0'\n", "radius.coa_source: must be a specific address"),
        ("[radius]\ncoa_timeout = 0\n", "radius.coa_timeout: expected a number between"),
        ("[radius]\ncoa_attempts = 0\n", "radius.coa_attempts: expected an integer between 1"),
    ],
)
def test_quarantine_and_coa_errors(tmp_path: Path, snippet: str, expected: str) -> None:
    text = MINIMAL.replace("[groups.staff]\n", "") + snippet
    if "[groups." not in snippet:
        text += "[groups.staff]\n"
    with pytest.raises(ConfigError) as err:
        parse(text, tmp_path)
    assert any(d.startswith(expected) for d in err.value.details), err.value.details


def test_quarantine_and_coa_source_defaults(tmp_path: Path) -> None:
    s = parse(MINIMAL + "quarantine_vlan = 999\nquarantine_filter_id = 'q-acl'\n", tmp_path)
    assert (s.group("staff").quarantine_vlan, s.group("staff").quarantine_filter_id) == ("999",
                                                                                         "q-acl")
    assert s.radius.coa_source_address == "127.0.0.1"  # the [radius] listen host
    s = parse("[radius]\nlisten = '0.0.0.0:1812'\n" + MINIMAL, tmp_path)
    assert s.radius.coa_source_address is None  # wildcard: the kernel picks
    s = parse("[radius]\nlisten = '0.0.0.0:1812'\ncoa_source = '10.0.0.2'\n" + MINIMAL, tmp_path)
    assert s.radius.coa_source_address == "10.0.0.2"
    assert (s.radius.coa_timeout, s.radius.coa_attempts) == (1.0, 3)
