"""`certgate storage migrate|copy` and the `--connect` part of `certgate check-config`.

Registered by `certgate.cli.build_parser`. The copying itself is `store.copy_store`; this is
the glue: which databases, what is printed. A URL is only ever printed redacted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from certgate.errors import ConfigError, OperatorError
from certgate.settings import Settings, postgres_url_problem
from certgate.storage import open_configured
from store import (
    NotEmpty,
    SchemaMismatch,
    SourceChanged,
    Store,
    StoreOpenError,
    StoreUnavailable,
    copy_store,
    open_store,
)


def add_parsers(sub: argparse._SubParsersAction, add, settings_of) -> None:  # noqa: ANN001
    """Parser entries; `add(name, fn, help, parent)` and `settings_of(args)` come from cli.py."""

    def run(fn):  # noqa: ANN001, ANN202
        return lambda args: asyncio.run(fn(settings_of(args), args))

    parser_class = sub._parser_class  # noqa: SLF001 - the CLI's exit-2 parser
    st = sub.add_parser("storage", help="the store: schema migrations, copy to another database") \
        .add_subparsers(dest="storage_command", required=True, parser_class=parser_class)
    add("migrate", run(storage_migrate), "apply pending schema migrations to the configured "
        "store; prints the schema version before and after", st)
    sp = add("copy", run(storage_copy), "copy the configured store (every table) into a new, "
             "empty SQLite or PostgreSQL database", st)
    to = sp.add_mutually_exclusive_group(required=True)
    to.add_argument("--to", metavar="URL",
                    help="postgresql://USER@HOST:PORT/DATABASE, sqlite:///PATH or a file path")
    to.add_argument("--to-env", metavar="VAR",
                    help="an environment variable holding that URL (keeps a password off the "
                    "command line; PGPASSWORD and ~/.pgpass work too)")
    sp.add_argument("--timeout", type=float, default=60.0,
                    help="seconds per statement on the target (default 60)")


async def _version(store: Store) -> int:
    try:
        return await store.schema_version()
    except StoreUnavailable as exc:
        raise OperatorError(f"the store {store.description} does not answer: {exc.detail}") from None


async def storage_migrate(s: Settings, args: argparse.Namespace) -> int:
    store = await open_configured(s, migrate=False)
    try:
        before = await _version(store)
        try:
            after = await store.driver.migrate()
        except StoreOpenError as exc:  # SchemaTooNew included
            raise OperatorError(str(exc)) from None
    finally:
        await store.close()
    where = f"{store.backend} {store.description}"
    if before == after:
        print(f"{where}: schema v{after}, up to date")
    else:
        print(f"{where}: schema v{before} -> v{after}")
    return 0


def copy_target(args: argparse.Namespace) -> tuple[Path | None, str | None]:
    """(SQLite path, PostgreSQL URL) named by --to or the variable --to-env names."""
    text = args.to if args.to is not None else os.environ.get(args.to_env, "")
    text = text.strip()
    if not text:
        raise ConfigError(f"--to-env: environment variable {args.to_env} is not set or empty")
    scheme = text.split("://", 1)[0].lower() if "://" in text else None
    if scheme in ("postgresql", "postgres"):
        problem = postgres_url_problem(text)
        if problem:
            raise ConfigError(f"--to: {problem} (expected postgresql://USER@HOST:PORT/DATABASE)")
        return None, text
    if scheme == "sqlite":
        rest = text[len("sqlite://"):]
        if not rest.startswith("/") or not rest.strip("/"):
            raise ConfigError("--to: expected sqlite:///ABSOLUTE/PATH (or a plain file path)")
        return Path("/" + rest.lstrip("/")), None
    if scheme is not None:
        raise ConfigError(f"--to: unsupported scheme {scheme}://: use postgresql://..., "
                          "sqlite:///PATH or a file path")
    return Path(text).expanduser().resolve(), None


def _progress(table: str, rows: int) -> None:
    print(f"  {table}: {rows} rows ...", file=sys.stderr, flush=True)


async def storage_copy(s: Settings, args: argparse.Namespace) -> int:
    path, url = copy_target(args)
    if path is not None and s.storage.url is None and path == s.storage.path.resolve():
        raise OperatorError(f"the target {path} is the configured store itself")
    source = await open_configured(s, migrate=False)
    try:
        try:
            target = await open_store(path=path, url=url, timeout=args.timeout, pool_size=2)
        except StoreOpenError as exc:
            raise OperatorError(f"target: {exc}") from None
        try:
            print(f"copying {source.backend} {source.description} to {target.backend} "
                  f"{target.description}", file=sys.stderr, flush=True)
            counts = await copy_store(source.driver, target.driver, progress=_progress)
            version = await target.schema_version()
        except (NotEmpty, SchemaMismatch, SourceChanged) as exc:
            raise OperatorError(str(exc)) from None
        except StoreUnavailable as exc:
            raise OperatorError(f"copy to {target.description} failed, nothing was committed: "
                                f"{exc}") from None
        finally:
            await target.close()
    finally:
        await source.close()
    for table, rows in counts.items():
        print(f"{table:<16} {rows}")
    print(f"copied {sum(counts.values())} rows in {len(counts)} tables to {target.backend} "
          f"{target.description} (schema v{version})")
    return 0


async def check_connection(s: Settings) -> int:
    """`check-config --connect`: open the store without migrating it, ping it, report."""
    st = s.storage
    if st.url is None and not st.path.exists():
        print(f"storage: sqlite {st.path} does not exist yet (`certgate init` or `serve` "
              "creates it)")
        return 0
    store = await open_configured(s, migrate=False)
    try:
        try:
            await store.ping()
        except StoreUnavailable as exc:
            raise OperatorError(f"the store {store.description} does not answer: "
                                f"{exc.detail}") from None
        version = await _version(store)
        latest = store.driver.latest_version
    finally:
        await store.close()
    where = f"storage: {store.backend} {store.description} answers, schema v{version}"
    if version > latest:
        raise OperatorError(f"the store {store.description} has schema v{version}, newer than "
                            f"this certgate (v{latest}): upgrade certgate")
    if version < latest:
        pending = latest - version
        print(f"{where}, {pending} migration(s) pending (to v{latest}): run `certgate storage "
              "migrate` (or `certgate serve` migrates at start)")
    else:
        print(f"{where} (up to date)")
    return 0
