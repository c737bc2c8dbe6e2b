"""config/grafana/certgate.json is a well-formed Grafana dashboard over certgate's metrics.

What Grafana needs without running Grafana: the current schema, known panel types, unique
ids, a grid position for every panel (inside the 24 columns, no overlaps), the datasource
variable on every panel and target, the template variables, and only metric names that
certgate (or the client library's process collector) exports. That every query answers
on a real Prometheus is tests/integration/test_dashboard.py.
"""

from __future__ import annotations

import json
import re

from prometheus_client import REGISTRY

import certgate.app  # noqa: F401 - imports every module that declares metrics
import certgate.reconcile  # noqa: F401 - imported lazily by serve when [mdm] reconcile_url is set
import certgate.telemetry  # noqa: F401
from tests.support import REPO

DASHBOARD = REPO / "config" / "grafana" / "certgate.json"
DS = {"type": "prometheus", "uid": "${datasource}"}
ROWS = ["Authentications (EAP-TLS)", "RADIUS health", "Enrollment (SCEP)", "Certificates",
        "PKI health", "Process and store", "MDM"]


def load() -> dict:
    return json.loads(DASHBOARD.read_text())


def test_schema_ids_and_grid() -> None:
    d = load()
    assert d["schemaVersion"] >= 39 and d["uid"] == "certgate" and d["title"]
    panels = d["panels"]
    assert {p["type"] for p in panels} <= {"row", "timeseries", "stat", "table", "bargauge"}
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) and i > 0 for i in ids)
    cells: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        assert all(isinstance(g[k], int) for k in ("h", "w", "x", "y")), p["title"]
        assert g["w"] > 0 and g["h"] > 0 and g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"{p['title']} overlaps another panel"
        cells |= mine
    assert [p["title"] for p in panels if p["type"] == "row"] == ROWS
    assert all(p["type"] != "row" or (p["panels"] == [] and not p["collapsed"]) for p in panels)


def test_datasource_variable_on_every_panel_and_target() -> None:
    d = load()
    for p in d["panels"]:
        assert p["datasource"] == DS, p["title"]
        if p["type"] == "row":
            continue
        assert p.get("description"), f"{p['title']}: say what it means at 3 a.m."
        assert p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["datasource"] == DS and t["expr"].strip(), p["title"]


def test_template_variables() -> None:
    variables = {v["name"]: v for v in load()["templating"]["list"]}
    assert set(variables) == {"datasource", "group", "client"}
    ds = variables["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    for name, metric in (("group", "certgate_certificates"),
                         ("client", "certgate_radius_requests_total")):
        v = variables[name]
        assert v["type"] == "query" and v["datasource"] == DS
        assert v["multi"] and v["includeAll"] and v["allValue"] == ".*"
        assert v["definition"] == v["query"]["query"] == f"label_values({metric}, {name})"
    used = " ".join(t["expr"] for p in load()["panels"] for t in p.get("targets", []))
    assert 'group=~"$group"' in used and 'client=~"$client"' in used
    assert 'group="$group"' not in used and 'client="$client"' not in used  # multi-value: =~


def test_only_exported_metric_names() -> None:
    families = {m.name for m in REGISTRY.collect()}
    suffixes = ("", "_total", "_bucket", "_sum", "_count")
    exprs = [t["expr"] for p in load()["panels"] for t in p.get("targets", [])]
    names = set(re.findall(r"\b((?:certgate|process)_[a-z0-9_]+)", " ".join(exprs)))
    unknown = {n for n in names if not any(n.removesuffix(s) in families
                                           for s in suffixes if n.endswith(s))}
    assert not unknown, unknown
    certgate_families = {f for f in families if f.startswith("certgate_")}
    shown = {f for f in certgate_families
             if any(n.removesuffix(s) == f for n in names for s in suffixes if n.endswith(s))}
    # everything but the index's last-update timestamp has a panel
    assert certgate_families - shown <= {"certgate_revocation_last_update_timestamp_seconds"}
