"""Replays every harness's seeds and kept corpus (tests/fuzz/corpus/<name>/): each
input that once crashed, hung or leaked must now pass the harness's invariants, within
the harness's per-input time budget."""

from __future__ import annotations

import importlib
import time

import pytest

from tests.fuzz._harness import FUZZ_DIR, corpus_inputs

#: The per-input budget the fuzzer enforces is 5 s (-timeout=5); a replayed input gets
#: 2 s on a loaded 2-core CI box: anything near that is a hang in the making.
PER_INPUT_SECONDS = 2.0

HARNESSES = sorted(p.stem for p in FUZZ_DIR.glob("fuzz_*.py"))


def _cases():
    for module_name in HARNESSES:
        module = importlib.import_module(f"tests.fuzz.{module_name}")
        name = module_name.removeprefix("fuzz_")
        for label, data in corpus_inputs(name, getattr(module, "SEEDS", [])):
            yield pytest.param(module, data, id=f"{name}/{label}")


def test_every_harness_has_seeds_or_corpus():
    assert HARNESSES, "no tests/fuzz/fuzz_*.py harness found"
    for module_name in HARNESSES:
        module = importlib.import_module(f"tests.fuzz.{module_name}")
        assert corpus_inputs(module_name.removeprefix("fuzz_"), getattr(module, "SEEDS", [])), module_name


@pytest.mark.parametrize(("module", "data"), list(_cases()))
def test_replay(module, data):
    started = time.monotonic()
    module.one_input(data)
    assert time.monotonic() - started < PER_INPUT_SECONDS
