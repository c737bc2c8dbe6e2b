"""[server] workers: a count from 1 to 64, or "auto" (the CPUs this process may run on)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from certgate.errors import ConfigError
from tests.unit.certgate.test_settings import MINIMAL, parse


def test_workers_count_auto_and_errors(tmp_path: Path) -> None:
    assert parse(MINIMAL, tmp_path).server.workers == 1
    assert parse("[server]\nworkers = 3\n" + MINIMAL, tmp_path).server.workers == 3
    cpus = len(os.sched_getaffinity(0))
    assert parse("[server]\nworkers = 'auto'\n" + MINIMAL, tmp_path).server.workers == cpus
    for bad in ("0", "65", "'many'", "2.5", "true"):
        with pytest.raises(ConfigError) as err:
            parse(f"[server]\nworkers = {bad}\n" + MINIMAL, tmp_path)
        assert any(d.startswith('server.workers: expected an integer between 1 and 64 or "auto"')
                   for d in err.value.details), err.value.details


def test_every_gauge_says_how_workers_combine_it() -> None:
    """With [server] workers > 1 a gauge's default multiprocess mode ("all") would export one
    series per worker pid, dead ones included: each certgate gauge names its mode."""
    import importlib

    from prometheus_client import REGISTRY, Gauge

    for module in ("certgate.app", "certgate.reconcile", "certgate.scep_http", "certgate.workers"):
        importlib.import_module(module)  # every module that declares gauges

    unnamed = [c._name for c in list(REGISTRY._collector_to_names)
               if isinstance(c, Gauge) and c._multiprocess_mode == "all"]
    assert unnamed == []
