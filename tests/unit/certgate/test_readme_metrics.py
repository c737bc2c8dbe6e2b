"""README.md's metrics section names every certgate_ family the process exports."""

from __future__ import annotations

import re

from prometheus_client import REGISTRY

import certgate.app  # noqa: F401 - imports every module that declares metrics
import certgate.telemetry  # noqa: F401
from tests.support import REPO


def test_readme_lists_every_family() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Metrics"):]
    section = section[:section.index("\n## ", 1)]
    listed = set(re.findall(r"`([a-z][a-z0-9_]+)(?:\{[^`]*\})?`", section))
    missing = []
    for family in REGISTRY.collect():
        if not family.name.startswith("certgate_"):
            continue
        short = family.name.removeprefix("certgate_")
        if short not in listed and f"{short}_total" not in listed:
            missing.append(family.name)
    assert not missing, f"README.md metrics section misses {missing}"
