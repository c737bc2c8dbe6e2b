"""`certgate certs issue` cost with many RSA groups (issue #11 §4).

    .venv/bin/python bench/cli_issue.py [--groups 6] [--ca-key rsa-3072] [--ra-key rsa-3072]
        [--runs 10] [--bulk 200] [--bulk-rsa 20] [--src DIR] [--keep]

Makes a throwaway config with --groups groups (root, server and intermediates --ca-key, RA
keys --ra-key), runs `certgate init`, then:

  single    --runs separate `certs issue --group gN --cn ...` processes (EC P-256 device key):
            wall time and CPU (user+sys of the child) per call, min / median / max.
  bulk      one `certs issue --from devices.csv` with --bulk EC P-256 devices spread over
            every group: wall and CPU in total and per certificate.
  bulk-rsa  the same with --bulk-rsa devices per RSA device key size (rsa-2048, rsa-3072):
            what server-side RSA key generation for the device adds.

--src DIR runs another certgate tree (e.g. `git archive <commit> | tar -x -C DIR`) with this
venv's interpreter (PYTHONPATH=DIR); a tree without `--from` gets only `single`. The
interpreter writes bytecode to a cache under the temp dir (PYTHONPYCACHEPREFIX), as an
installed certgate would have it; without it every run recompiles certgate's modules.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """\
[server]
data_dir = "var"

[radius]
listen = "127.0.0.1:18129"

[[radius.clients]]
name = "lo"
address = "127.0.0.0/8"
secret = "bench-secret-0123456789"

[http]
listen = "127.0.0.1:18089"
public_url = "http://127.0.0.1:18089"

[pki]
key_type = "{ca_key}"
ra_key_type = "{ra_key}"
"""


def run(cmd: list[str], env: dict) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall s, child CPU s, result). Runs in / so that `-m certgate` does not find the
    tree of the current directory before --src."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd="/")
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[3:])} exited {r.returncode}:\n{r.stderr[-2000:]}")
    return wall, cpu, r


def stats(values: list[float]) -> str:
    return (f"min {min(values):.3f}  median {statistics.median(values):.3f}  "
            f"max {max(values):.3f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--groups", type=int, default=6)
    ap.add_argument("--ca-key", default="rsa-3072")
    ap.add_argument("--ra-key", default="rsa-3072")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--bulk", type=int, default=200)
    ap.add_argument("--bulk-rsa", type=int, default=20)
    ap.add_argument("--src", type=Path, help="another certgate tree to measure")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="certgate-cli-issue-"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE",
                                                             "CERTGATE_CONFIG")}
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    src = (args.src or ROOT).resolve()
    if args.src:
        env["PYTHONPATH"] = str(src)
    config = work / "certgate.toml"
    text = CONFIG.format(ca_key=args.ca_key, ra_key=args.ra_key)
    groups = [f"g{i}" for i in range(1, args.groups + 1)]
    text += "".join(f"\n[groups.{g}]\nvlan = {10 + i}\n" for i, g in enumerate(groups))
    config.write_text(text)
    cli = [sys.executable, "-m", "certgate", "--config", str(config)]
    try:
        print(f"tree {src}; {args.groups} groups, CA keys {args.ca_key}, RA keys {args.ra_key}; "
              f"load average {os.getloadavg()[0]:.2f}")
        wall, cpu, _ = run([*cli, "init"], env)
        print(f"init: {wall:.2f} s wall, {cpu:.2f} s CPU")
        run([*cli, "check-config"], env)  # fills the bytecode cache
        walls, cpus = [], []
        for i in range(args.runs):
            wall, cpu, _ = run([*cli, "certs", "issue", "--group", groups[i % len(groups)],
                                "--cn", f"single-{i}", "--out", str(work / "single")], env)
            walls.append(wall)
            cpus.append(cpu)
        print(f"single  ({args.runs} processes, s per call)  wall {stats(walls)}")
        print(f"{'':43}CPU  {stats(cpus)}")
        help_text = run([*cli, "certs", "issue", "--help"], env)[2].stdout
        if "--from" not in help_text:
            print("bulk: this tree has no `certs issue --from`")
            return 0
        for key_type, n in (("ec-p256", args.bulk), ("rsa-2048", args.bulk_rsa),
                            ("rsa-3072", args.bulk_rsa)):
            if n <= 0:
                continue
            csv = work / f"devices-{key_type}.csv"
            csv.write_text("cn,group,key_type\n" + "".join(
                f"{key_type}-{i:05d},{groups[i % len(groups)]},{key_type}\n" for i in range(n)))
            wall, cpu, r = run([*cli, "certs", "issue", "--from", str(csv), "--out",
                                str(work / f"bulk-{key_type}")], env)
            issued = len(r.stdout.splitlines())
            assert issued == n, r.stderr
            print(f"bulk {key_type:<8} ({n} devices, one process)  {wall:.2f} s wall, "
                  f"{cpu:.2f} s CPU; per certificate {wall / n * 1000:.1f} ms wall, "
                  f"{cpu / n * 1000:.1f} ms CPU (start-up included)")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
