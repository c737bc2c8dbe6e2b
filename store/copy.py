"""`certgate storage copy`: every table of one store into an empty store of either backend.

The tables and columns come from the databases themselves (`Driver.tables`), so a table a
later migration adds is copied too, and a target whose tables differ is refused rather than
half-filled. Rows are read in chunks (`Driver.stream`) and written with explicit ids in ONE
target transaction, so a failed copy leaves the target empty; `Driver.reset_sequences` then
moves the id generators past the copied ids. The source is fingerprinted (row counts and the
change sequence) before and after: if it was written meanwhile the copy is rolled back
(`SourceChanged`): stop certgate on the source box, then copy.
"""

from __future__ import annotations

from collections.abc import Callable

from store.driver import Driver, Tx
from store.errors import NotEmpty, SchemaMismatch, SourceChanged

Progress = Callable[[str, int], None]  # (table, rows copied so far)

# Rows migrations insert themselves: the target's copy is replaced, not duplicated.
_UPSERT = {"meta": "key"}
_MIGRATION_ROWS = {"meta": "NOT (key='change_seq' AND value=0)"}


async def copy_store(source: Driver, target: Driver, *, progress: Progress | None = None,
                     chunk: int = 5_000, every: int = 50_000) -> dict[str, int]:
    """Copy `source` into the empty, migrated `target`; returns rows copied per table.

    Raises SchemaMismatch (a store not at this certgate's schema, or different tables),
    NotEmpty (the target holds data) or SourceChanged (written during the copy); in each
    case nothing was committed to the target."""
    tables = await _check_schemas(source, target)
    before = await _fingerprint(source, tables)
    counts: dict[str, int] = {}
    async with target.transaction("storage-copy") as tx:
        await _check_empty(tx, target, tables)
        for table, columns in tables.items():
            counts[table] = await _copy_table(source, tx, table, columns, chunk, every,
                                              progress)
        await target.reset_sequences(tx)
        after = await _fingerprint(source, tables)
        if after != before:
            raise SourceChanged(
                f"the source {source.description} was written during the copy ({_diff(before, after)}); "
                "nothing was committed to the target: stop certgate on the source, then copy again")
    return counts


async def _check_schemas(source: Driver, target: Driver) -> dict[str, tuple[str, ...]]:
    for driver, role, fix in ((source, "source", "run `certgate storage migrate` first"),
                              (target, "target", "migrate it with this certgate")):
        version = await driver.schema_version()
        if version != driver.latest_version:
            raise SchemaMismatch(
                f"the {role} {driver.description} has schema v{version}, this certgate's "
                f"{driver.backend} schema is v{driver.latest_version}: {fix}")
    src, dst = await source.tables(), await target.tables()
    problems = [f"{t} only in the source" for t in sorted(src.keys() - dst.keys())]
    problems += [f"{t} only in the target" for t in sorted(dst.keys() - src.keys())]
    problems += [f"{t} has columns {sorted(src[t])} in the source, {sorted(dst[t])} in the target"
                 for t in sorted(src.keys() & dst.keys()) if set(src[t]) != set(dst[t])]
    if problems:
        raise SchemaMismatch(f"the source {source.description} and the target "
                             f"{target.description} have different tables: {'; '.join(problems)}")
    return src


async def _check_empty(tx: Tx, target: Driver, tables: dict[str, tuple[str, ...]]) -> None:
    for table in tables:
        where = f" WHERE {_MIGRATION_ROWS[table]}" if table in _MIGRATION_ROWS else ""
        row = await tx.fetchone(f"SELECT count(*) FROM {table}{where}")
        if row and int(row[0]):
            raise NotEmpty(
                f"the target {target.description} is not empty ({table} has {int(row[0])} "
                "row(s)): copy only into a new, empty database")


async def _copy_table(source: Driver, tx: Tx, table: str, columns: tuple[str, ...], chunk: int,
                      every: int, progress: Progress | None) -> int:
    names = ", ".join(columns)
    insert = f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(columns))})"
    if table in _UPSERT:
        key = _UPSERT[table]
        updates = ", ".join(f"{c}=excluded.{c}" for c in columns if c != key)
        insert += f" ON CONFLICT({key}) DO UPDATE SET {updates}"
    copied, reported = 0, 0
    async for rows in source.stream("storage-copy", f"SELECT {names} FROM {table}", (), chunk):
        await tx.executemany(insert, rows)
        copied += len(rows)
        if progress is not None and copied - reported >= every:
            reported = copied
            progress(table, copied)
    return copied


async def _fingerprint(driver: Driver, tables: dict[str, tuple[str, ...]]) -> dict[str, int]:
    out: dict[str, int] = {}
    async with driver.reader("storage-copy") as tx:
        for table in tables:
            row = await tx.fetchone(f"SELECT count(*) FROM {table}")
            out[table] = int(row[0]) if row else 0
        row = await tx.fetchone("SELECT value FROM meta WHERE key='change_seq'")
        out["change_seq"] = int(row[0]) if row else 0
    return out


def _diff(before: dict[str, int], after: dict[str, int]) -> str:
    return ", ".join(f"{k} {before.get(k)} -> {after.get(k)}" for k in sorted(after)
                     if before.get(k) != after.get(k))
