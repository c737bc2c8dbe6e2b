"""`certgate serve` with a candidate fix monkeypatched in (product code untouched), for
bench/scep_load.py --variant. Measures what a fix would buy before anyone writes it.

    .venv/bin/python bench/scep_serve_variant.py --variant V[,V...] --config FILE

Variants:
  switch1ms   sys.setswitchinterval(0.001): a thread waiting for the GIL (the event loop
              with a RADIUS packet ready) gets it after <= 1 ms instead of <= 5 ms
  workers1    certgate.scep_http.EXECUTOR_WORKERS = 1 (one SCEP thread, not 2; matters
              with `[scep] workers = 0`, i.e. scep_load.py --scep-workers 0)

The former `procpool` / `procpool_nice` variants are product code since the SCEP crypto
moved to worker processes (`[scep] workers`, enrollment/scep_crypto.py); measure the old
in-thread layout with `bench/scep_load.py --scep-workers 0`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", required=True)
    ap.add_argument("--config", required=True)
    a = ap.parse_args()
    variants = set(a.variant.split(","))
    unknown = variants - {"switch1ms", "workers1", "none"}
    if unknown:
        ap.error(f"unknown variant(s) {sorted(unknown)}")
    if "switch1ms" in variants:
        sys.setswitchinterval(0.001)
    if "workers1" in variants:
        import certgate.scep_http

        certgate.scep_http.EXECUTOR_WORKERS = 1
    from certgate.cli import main as cli_main

    sys.argv = [sys.argv[0], "--config", a.config, "serve"]
    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
