"""Run certgate's benchmarks in sequence (`make bench`).

    .venv/bin/python bench/run.py [--out DIR] [--quick] [--only codec,load,revocation,ocsp]

1. codec       bench/radius_codec.py: codec µs per operation, server CPU per in-process
               EAP-TLS handshake
2. load        bench/radius_load.sh: certgate vs FreeRADIUS (if installed) with real
               eapol_test clients, TLS 1.2/1.3, fresh c=2/4 and reauth c=32, 8 s per point
3. inproc      bench/radius_inproc.py: server CPU per auth through the whole RADIUS shell,
               in process, and what each candidate fix saves
4. revocation  bench/revocation_scale.py: 1,000,000 revoked certificates: start-up time,
               CRL build, auth CPU vs an empty store
5. scep        bench/scep_load.py: SCEP enrollments vs micromdm scepserver (enroll/s, CPU per
               enrollment) and RADIUS p95 idle vs during an enrollment burst
6. storm       bench/scep_storm.py: 1,000 enrollments within 10 s (503 + Retry-After
               honoured), RADIUS p95 idle vs during the storm
7. ocsp        bench/ocsp_load.py: OCSP responses per server CPU-second, certgate vs
               `openssl ocsp` on the same certificates, with and without nonce
8. load-rsa    bench/radius_load.sh --key rsa2048: certgate vs FreeRADIUS with RSA-2048
               root, intermediates, server and client certificates (fresh c=2/4, TLS 1.2/1.3)

Each step's output is printed and saved under --out (default /tmp/certgate-bench-<time>/).
--quick: 3 s points, fresh c=2 only, 100,000 rows (a smoke run, not for the README).
`ocsp` and `load-rsa` run only when named in --only (default: the first six, as before).
Exit: 0 if every step exited 0, else 1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = []
    for cmd in (["eapol_test", "-v"], ["freeradius", "-v"], ["openssl", "version"]):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            text = (out.stdout or out.stderr).strip().splitlines()
            versions.append(text[0] if text else "?")
        except (OSError, subprocess.TimeoutExpired):
            versions.append(f"{cmd[0]}: not installed")
    try:
        import cryptography
        import OpenSSL
        from cryptography.hazmat.backends.openssl import backend

        py_tls = (f"cryptography {cryptography.__version__} ({backend.openssl_version_text()}), "
                  f"pyOpenSSL {OpenSSL.__version__}")
    except Exception as exc:  # noqa: BLE001 - informational only
        py_tls = f"cryptography: {exc}"
    return (f"{dt.datetime.now().isoformat(timespec='seconds')} {platform.node()}: "
            f"{os.cpu_count()} CPU ({cpu}), {mem:.0f} GiB, {platform.platform()}, "
            f"Python {platform.python_version()}; {py_tls}; " + "; ".join(versions))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", default="codec,load,inproc,revocation,scep,storm")
    a = p.parse_args()
    out = a.out or Path(f"/tmp/certgate-bench-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    only = set(a.only.split(","))

    steps: list[tuple[str, list[str]]] = []
    if "codec" in only:
        steps.append(("codec", [PY, str(HERE / "radius_codec.py")]
                      + (["--n", "5000", "--handshakes", "50"] if a.quick else [])))
    if "load" in only:
        steps.append(("load", ["bash", str(HERE / "radius_load.sh"), "--out", str(out / "load")]
                      + (["-s", "3", "-c", "2", "--reauth-conc", "0"] if a.quick else [])))
    if "inproc" in only:
        steps.append(("inproc", [PY, str(HERE / "radius_inproc.py")]
                      + (["--auths", "40", "--rounds", "2"] if a.quick else [])))
    if "revocation" in only:
        steps.append(("revocation", [PY, str(HERE / "revocation_scale.py")]
                      + (["--rows", "100000", "--secs", "3", "--handshakes", "100"]
                         if a.quick else [])))

    if "scep" in only:
        steps.append(("scep", [PY, str(HERE / "scep_load.py")]
                      + (["--n", "100", "--secs", "5"] if a.quick else [])))
    if "storm" in only:
        steps.append(("storm", [PY, str(HERE / "scep_storm.py")]
                      + (["--n", "200", "--window", "3"] if a.quick else [])))
    if "ocsp" in only:
        steps.append(("ocsp", [PY, str(HERE / "ocsp_load.py"), "--out", str(out / "ocsp")]
                      + (["--secs", "2", "--certs", "50", "--revoked", "5"] if a.quick else [])))
    if "load-rsa" in only:
        steps.append(("load-rsa", ["bash", str(HERE / "radius_load.sh"), "--key", "rsa2048",
                                   "--reauth-conc", "0", "--out", str(out / "load-rsa")]
                      + (["-s", "3", "-c", "2"] if a.quick else [])))

    info = machine()
    print(f"# machine: {info}", flush=True)
    (out / "machine.txt").write_text(info + "\n")
    rc = 0
    for name, cmd in steps:
        print(f"\n## {name}: {' '.join(cmd)}", flush=True)
        t0 = time.monotonic()
        with (out / f"{name}.txt").open("w") as log:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True)
            assert proc.stdout is not None
            for line in proc.stdout:
                sys.stdout.write(line)
                sys.stdout.flush()
                log.write(line)
            proc.wait()
        print(f"## {name}: exit {proc.returncode} after {time.monotonic() - t0:.0f} s",
              flush=True)
        rc |= proc.returncode != 0
    print(f"\nresults in {out}")
    return 1 if rc else 0


if __name__ == "__main__":
    raise SystemExit(main())
