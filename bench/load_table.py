"""Markdown table from radius_load.sh's load.txt (one eaptls_load.sh line per point).

    python bench/load_table.py OUT/load.txt
"""

from __future__ import annotations

import contextlib
import sys


def parse(path: str) -> list[dict[str, str]]:
    rows = []
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for line in lines:
        fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        if "server" in fields and "mode" in fields:
            rows.append(fields)
    return rows


def cell(r: dict[str, str] | None) -> list[str]:
    if r is None:
        return ["-", "-", "-"]
    lat = "-" if r["lat_p50_ms"] == "-" else f"{r['lat_p50_ms']}/{r['lat_p95_ms']}"
    bad = "" if r.get("exit", "0") == "0" else f" (exit {r['exit']}, fail {r['fail']})"
    return [f"{float(r['auths_per_s']):.0f}{bad}", lat, r["server_cpu_ms_per_auth"]]


def table(rows: list[dict[str, str]]) -> str:
    points: list[tuple[str, str, str]] = []
    by: dict[tuple[str, str, str, str], dict[str, str]] = {}
    for r in rows:
        key = (r["tls"], r["mode"], r["conc"])
        if key not in points:
            points.append(key)
        by[(r["server"], *key)] = r
    out = [
        "| TLS | mode | c | certgate auths/s | p50/p95 ms | **CPU ms/auth** | "
        "FreeRADIUS auths/s | p50/p95 ms | **CPU ms/auth** | certgate/FR CPU | host busy % | load1 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for tls, mode, conc in points:
        cg = by.get(("certgate", tls, mode, conc))
        fr = by.get(("freeradius", tls, mode, conc))
        ratio = "-"
        with contextlib.suppress(TypeError, ValueError, ZeroDivisionError):
            cg_ms = float(cg["server_cpu_ms_per_auth"])  # type: ignore[index]
            ratio = f"{cg_ms / float(fr['server_cpu_ms_per_auth']):.2f}"  # type: ignore[index]
        busy = "/".join(r["host_busy_pct"] for r in (cg, fr) if r)
        load = "/".join(r.get("loadavg1", "-") for r in (cg, fr) if r)
        out.append("| " + " | ".join([tls, mode, conc, *cell(cg), *cell(fr), ratio, busy, load]) + " |")
    return "\n".join(out)


if __name__ == "__main__":
    print(table(parse(sys.argv[1])))
