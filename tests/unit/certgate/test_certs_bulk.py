"""`certgate certs issue --from devices.csv` / repeated `--cn` (issue #11 §4): real CLI
processes on a real PKI (6 RSA-3072 intermediates) and SQLite store."""

from __future__ import annotations

import json
import os
import pty
import resource
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support import certgate, write_config

GROUPS = ("staff", "guests", "g3", "g4", "g5", "g6")
EXTRA = '\n[pki]\nkey_type = "rsa-3072"\n' + "".join(
    f"\n[groups.{g}]\nvlan = {i}\n" for i, g in enumerate(GROUPS[2:], 30))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = write_config(tmp_path_factory.mktemp("bulk") / "cg", extra=EXTRA)
    certgate("init", config=config, timeout=300)
    return config


def intermediate(config: Path, group: str) -> x509.Certificate:
    path = config.parent / "var" / "pki" / "groups" / group / "ca.crt"
    return x509.load_pem_x509_certificate(path.read_bytes())


def inventory(config: Path) -> dict[str, dict]:
    rows = json.loads(certgate("certs", "list", "--json", config=config).stdout)
    return {r["serial"]: r for r in rows}


def run_cli(config: Path, *args: str) -> tuple[subprocess.CompletedProcess, float, float]:
    """(result, wall s, CPU s of the child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "certgate", "--config", str(config), *args],
                       capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r, wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def test_csv_with_good_and_bad_lines(lab: Path, tmp_path: Path) -> None:
    csv = tmp_path / "devices.csv"
    csv.write_text(
        "CN,Group,SAN,Device-ID,days,key_type\n"
        "lap-01,staff,dns:lap-01.example.test email:a@example.test,DEV-1,,\n"   # 2
        "lap-02,,,DEV-2,10,\n"                                                  # 3 (--group)
        "lap-03,nope,,,,\n"                                                     # 4
        "lap-04,g3,,,abc,\n"                                                    # 5
        "\n"                                                                    # 6 blank
        "lap-05,g4,,,,rsa-1024\n"                                               # 7
        "lap-06,g5,bogus:x,,,\n"                                                # 8
        "lap-01,g6,,,,\n"                                                       # 9 duplicate
        ",staff,,,,\n"                                                          # 10
        "lap-07,g6\n"                                                           # 11
        "../evil,staff,,,,\n"                                                   # 12
        '"lap-08",g6,,DEV-8,5,rsa-2048\n')                                      # 13
    out = tmp_path / "out"
    before = inventory(lab)
    r, _, _ = run_cli(lab, "certs", "issue", "--from", str(csv), "--group", "guests",
                      "--out", str(out))
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    issued = [line.split("\t") for line in r.stdout.splitlines()]
    assert [(cn, group) for _, cn, group in issued] == [
        ("lap-01", "staff"), ("lap-02", "guests"), ("lap-08", "g6")]
    assert "\r" not in r.stdout  # no progress line when stdout is not a terminal
    for expected in ("line 4, column group: unknown group 'nope'",
                     "line 5, column days: 'abc' is not an integer 1..3650",
                     "line 7, column key_type: 'rsa-1024' is not one of",
                     "line 8, column san: 'bogus:x': unknown kind 'bogus'",
                     "line 9, column cn: 'lap-01' is already on line 2",
                     "line 10, column cn: empty",
                     "line 11: 2 fields, the header has 6",
                     "line 12, column cn: '../evil' cannot be used as a file name"):
        assert r.stderr.count(expected) == 2, (expected, r.stderr)  # as it happens + summary
    assert "issued 3, failed 8 of 11" in r.stderr

    rows = inventory(lab)
    assert set(rows) - set(before) == {serial for serial, _, _ in issued}
    by_cn = {cn: rows[serial] for serial, cn, _ in issued}
    assert by_cn["lap-01"]["device_id"] == "DEV-1"
    assert by_cn["lap-01"]["sans"] == ["dns:lap-01.example.test", "email:a@example.test"]
    for serial, cn, group in issued:
        cert = x509.load_pem_x509_certificate((out / f"{cn}.crt").read_bytes())
        assert format(cert.serial_number, "x") == serial
        cert.verify_directly_issued_by(intermediate(lab, group))
        assert (out / f"{cn}.key").stat().st_mode & 0o777 == 0o600
        chain = x509.load_pem_x509_certificates((out / f"{cn}.chain.pem").read_bytes())
        assert chain == [cert, intermediate(lab, group)]
    lap8 = x509.load_pem_x509_certificate((out / "lap-08.crt").read_bytes())
    assert isinstance(lap8.public_key(), rsa.RSAPublicKey) and lap8.public_key().key_size == 2048
    assert (lap8.not_valid_after_utc - lap8.not_valid_before_utc).days == 5
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{cn}{ext}" for cn in ("lap-01", "lap-02", "lap-08")
        for ext in (".key", ".crt", ".chain.pem"))

    # the same file again: every device already has files, nothing is issued twice
    r, _, _ = run_cli(lab, "certs", "issue", "--from", str(csv), "--group", "guests",
                      "--out", str(out))
    assert r.returncode == 1 and r.stdout == ""
    assert "issued 0, failed 11 of 11" in r.stderr
    assert "line 2: " in r.stderr and "lap-01.key exists: not issued" in r.stderr
    assert inventory(lab) == rows


@pytest.mark.parametrize(("text", "message"), [
    ("cn,vlan\nx,1\n", "line 1: unknown column 'vlan' (columns: cn, group, san, device_id"),
    ("group,san\nstaff,\n", "line 1: no cn column"),
    ("cn,cn\nx,y\n", "line 1: column cn appears twice"),
    ("", "line 1: empty; the first line must be the header"),
    ("cn\n", "no devices after the header"),
    ('cn\n"x\n', "not valid CSV"),
])
def test_a_file_that_is_not_a_device_list_is_a_usage_error(lab: Path, tmp_path: Path,
                                                           text: str, message: str) -> None:
    csv = tmp_path / "d.csv"
    csv.write_text(text)
    r, _, _ = run_cli(lab, "certs", "issue", "--from", str(csv), "--group", "staff",
                      "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "o").exists()


def test_usage_errors(lab: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "o")
    latin = tmp_path / "latin1.csv"
    latin.write_bytes(b"cn\nok\ncaf\xe9\n")
    for args, message in [
        (["--from", str(tmp_path / "missing.csv")], "--from"),
        (["--from", str(latin), "--group", "staff"], "line 3: not UTF-8"),
        (["--cn", "a", "--from", str(latin)], "one of them"),
        ([], "give --cn NAME (repeatable) or --from devices.csv"),
        (["--cn", "a"], "--group is required with --cn"),
        (["--group", "staff", "--cn", "a", "--cn", "b", "--device-id", "D"],
         "--san and --device-id apply to a single --cn"),
        (["--group", "staff", "--cn", "a", "--cn", "a"], "--cn 'a' given twice"),
        (["--group", "staff", "--cn", "a", "--cn", "b/c"], "--cn: 'b/c' cannot be used"),
        (["--group", "staff", "--cn", "a", "--san", "dns:"], "--san: 'dns:': expected"),
        (["--group", "nope", "--cn", "a"], "--group: unknown group 'nope'"),
    ]:
        r, _, _ = run_cli(lab, "certs", "issue", "--out", out, *args)
        assert r.returncode == 2 and message in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr
    assert not Path(out).exists()


def test_repeated_cn_and_the_cost_of_one_call(lab: Path, tmp_path: Path) -> None:
    """One call loads one intermediate key, not the 6 CA + 6 RA keys of the old
    Hierarchy.load (14 RSA key checks, ~0.2 s CPU each for RSA-3072: >= 2.5 s per call)."""
    out = tmp_path / "out"
    cpus = []
    for i, group in enumerate(GROUPS[:3]):
        r, wall, cpu = run_cli(lab, "certs", "issue", "--group", group, "--cn", f"one-{i}",
                               "--out", str(out))
        assert r.returncode == 0, r.stderr
        assert len(r.stdout.strip()) > 20 and "\t" not in r.stdout  # just the serial, as ever
        cpus.append(cpu)
        print(f"certs issue --group {group}: {wall:.2f} s wall, {cpu:.2f} s CPU")
    assert min(cpus) < 1.2, cpus  # measured 0.31-0.53 s on a loaded 2-core box

    n = 40
    cns = [arg for i in range(n) for arg in ("--cn", f"many-{i:02d}")]
    r, wall, cpu = run_cli(lab, "certs", "issue", "--group", "g3", *cns, "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert [line.split("\t")[1] for line in r.stdout.splitlines()] == [
        f"many-{i:02d}" for i in range(n)]
    assert f"issued {n}, failed 0 of {n}" in r.stderr
    print(f"{n} devices in one call: {wall:.2f} s wall, {cpu:.2f} s CPU")
    assert cpu < min(cpus) + n * 0.05, (cpu, cpus)  # measured ~11 ms CPU per certificate


def test_progress_line_on_a_terminal(lab: Path, tmp_path: Path) -> None:
    csv = tmp_path / "d.csv"
    csv.write_text("cn,group\n" + "".join(f"tty-{i},staff\n" for i in range(5)) + "tty-x,nope\n")
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "certgate", "--config", str(lab), "certs",
                             "issue", "--from", str(csv), "--out", str(tmp_path / "o")],
                            stdout=slave, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(master)
    stderr = proc.communicate(timeout=60)[1].decode()
    shown = b"".join(chunks).decode()
    assert proc.returncode == 1, stderr
    assert "\r\x1b[K[6/6] issued 5, failed 1" in shown
    assert shown.count("\tstaff") == 5
    assert "line 7, column group: unknown group 'nope'" in stderr
    assert "issued 5, failed 1 of 6" in stderr
