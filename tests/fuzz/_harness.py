"""The one way every harness in tests/fuzz/ runs: under atheris (coverage-guided,
libFuzzer underneath) from the command line, and as a corpus replay inside pytest.

A harness is a module ``tests/fuzz/fuzz_<name>.py`` with

- ``one_input(data: bytes) -> None``: feeds ``data`` to the code under test and
  checks the invariants. Input the code rightly refuses (its typed errors, a drop it
  counts) returns normally; anything else (an untyped exception, a wrong answer, a
  budget overrun) raises, which atheris reports as a crash and the replay test as a
  failure;
- optionally ``SEEDS``: a list of valid or near-valid inputs to start from (written
  into the working corpus on the first run, replayed by the test suite).

``python -m tests.fuzz.fuzz_<name> [libFuzzer flags]`` fuzzes; crashing inputs go to
``tests/fuzz/corpus/<name>/`` once fixed (tests/fuzz/README.md), where
tests/fuzz/test_corpus_replay.py replays every one on each ``make test``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

FUZZ_DIR = Path(__file__).resolve().parent
CORPUS_DIR = FUZZ_DIR / "corpus"
#: libFuzzer defaults: a hang is an input taking over 5 s, a leak or blow-up one
#: pushing RSS past 2 GiB (both are findings, not noise).
DEFAULT_FLAGS = ["-timeout=5", "-rss_limit_mb=2048", "-max_len=16384"]


def run(name: str, one_input: Callable[[bytes], None], seeds: list[bytes] = ()) -> None:
    """Fuzz ``one_input`` with atheris; the working corpus is ``.fuzz-work/<name>``."""
    import atheris  # only needed to fuzz; the replay test imports harnesses without it

    work = FUZZ_DIR / ".fuzz-work" / name
    work.mkdir(parents=True, exist_ok=True)
    for index, seed in enumerate(seeds):
        path = work / f"seed-{index:03d}"
        if not path.exists():
            path.write_bytes(seed)
    # Crashing inputs land next to the working corpus, never in the current directory.
    artifacts = f"-artifact_prefix={work.parent / (name + '-crash-')}"
    args = [sys.argv[0], *DEFAULT_FLAGS, artifacts, *sys.argv[1:]]
    if not any(not a.startswith("-") for a in sys.argv[1:]):
        args.append(str(work))
        kept = CORPUS_DIR / name
        if kept.is_dir():
            args.append(str(kept))
    atheris.instrument_all()
    atheris.Setup(args, one_input)
    atheris.Fuzz()


def corpus_inputs(name: str, seeds: list[bytes] = ()) -> list[tuple[str, bytes]]:
    """The inputs the replay test feeds one harness: its seeds and its kept corpus."""
    inputs = [(f"seed-{i:03d}", seed) for i, seed in enumerate(seeds)]
    kept = CORPUS_DIR / name
    if kept.is_dir():
        inputs.extend((p.name, p.read_bytes()) for p in sorted(kept.iterdir()) if p.is_file())
    return inputs


def is_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")
