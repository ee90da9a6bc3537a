"""What writing an ingest's index rows costs SQLite, laid out different ways.

    python -m benchmarks.postings --records 100000

Reads the `vals` and `toks` rows of the catalogue `benchmarks.run` built (`<workdir>/<records>/
store`) and inserts them, in record order as the end of a bulk load does, into empty tables of
a scratch database, measuring CPU time for each way:

  rows          today's layout: a row per value and per token, with the store's indexes
  rows-sorted   the same rows sorted by index and token first (locality for the token index)
  rows-json     each chunk handed to SQLite as one JSON array through json_each
  blocks        one row per (index, token) and per (index, value) holding its postings packed
                (rid, item, ordinal, position or token count as 32-bit integers), the way
                Zebra's register keeps a term's postings together; grouping time included
"""
from __future__ import annotations

import argparse
import array
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from indexer.embedded import _ROW_SQL, _SCHEMA, DATABASE_NAME

CHUNK = 60_000  # rows per transaction


def _scratch(directory: Path) -> sqlite3.Connection:
    path = directory / f"scratch-{time.monotonic_ns()}.sqlite3"
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA cache_size = -65536")
    connection.executescript(_SCHEMA)
    return connection


def _in_chunks(connection: sqlite3.Connection, rows: list[tuple], insert: Callable[[list[tuple]], None]) -> None:
    for start in range(0, len(rows), CHUNK):
        connection.execute("BEGIN")
        insert(rows[start:start + CHUNK])
        connection.execute("COMMIT")


def rows_plain(connection: sqlite3.Connection, vals: list[tuple], toks: list[tuple], *, ordered: bool = False) -> None:
    for table, rows in (("vals", vals), ("toks", toks)):
        if ordered:
            rows = sorted(rows, key=lambda row: (row[0], str(row[1])))
        _in_chunks(connection, rows, lambda chunk, sql=_ROW_SQL[table].insert: connection.executemany(sql, chunk))


def rows_json(connection: sqlite3.Connection, vals: list[tuple], toks: list[tuple]) -> None:
    for table, rows in (("vals", vals), ("toks", toks)):
        columns = _ROW_SQL[table].insert.split("(", 1)[1].split(")", 1)[0]
        picks = ", ".join(f"value->>{n}" for n in range(len(columns.split(","))))
        sql = f"INSERT INTO {table} ({columns}) SELECT {picks} FROM json_each(?)"
        _in_chunks(connection, rows, lambda chunk: connection.execute(sql, (json.dumps(chunk, ensure_ascii=False),)))


def blocks(connection: sqlite3.Connection, vals: list[tuple], toks: list[tuple]) -> None:
    token_blocks: dict[tuple, array.array] = {}
    for idx, token, rid, item, vord, pos in toks:
        token_blocks.setdefault((idx, token), array.array("I")).extend((rid, item, vord, pos))
    value_blocks: dict[tuple, array.array] = {}
    for idx, key, num, rid, item, vord, ntok in vals:
        value_blocks.setdefault((idx, key if key is not None else num), array.array("I")).extend((rid, item, vord, ntok))
    connection.execute("CREATE TABLE token_blocks (idx TEXT, token TEXT, postings BLOB, PRIMARY KEY (idx, token)) WITHOUT ROWID")
    connection.execute("CREATE TABLE value_blocks (idx TEXT, value, postings BLOB, PRIMARY KEY (idx, value)) WITHOUT ROWID")
    connection.execute("BEGIN")
    connection.executemany("INSERT INTO token_blocks VALUES (?, ?, ?)",
                           ((i, t, a.tobytes()) for (i, t), a in sorted(token_blocks.items())))
    connection.executemany("INSERT INTO value_blocks VALUES (?, ?, ?)",
                           ((i, v, a.tobytes()) for (i, v), a in sorted(value_blocks.items(), key=lambda e: (e[0][0], str(e[0][1])))))
    connection.execute("COMMIT")
    print(f"  blocks: {len(token_blocks):,} token blocks, {len(value_blocks):,} value blocks", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.postings", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--workdir", type=Path, default=Path("var/bench"))
    parser.add_argument("--scratch", type=Path, help="where the scratch databases go (default: the system's)")
    args = parser.parse_args(argv)
    database = args.workdir / str(args.records) / "store" / DATABASE_NAME
    if not database.exists():
        raise SystemExit(f"no catalogue at {database}: run `python -m benchmarks.run --records {args.records} --only ingest`")
    source = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    vals = source.execute("SELECT idx, key, num, rid, item, vord, ntok FROM vals ORDER BY rid").fetchall()
    toks = source.execute("SELECT idx, token, rid, item, vord, pos FROM toks ORDER BY rid").fetchall()
    source.close()
    print(f"{len(vals):,} vals rows, {len(toks):,} toks rows", flush=True)
    ways: dict[str, Callable[[sqlite3.Connection], None]] = {
        "rows": lambda c: rows_plain(c, vals, toks),
        "rows-sorted": lambda c: rows_plain(c, vals, toks, ordered=True),
        "rows-json": lambda c: rows_json(c, vals, toks),
        "blocks": lambda c: blocks(c, vals, toks),
    }
    with tempfile.TemporaryDirectory(dir=args.scratch) as directory:
        for name, way in ways.items():
            connection = _scratch(Path(directory))
            started = time.process_time()
            way(connection)
            print(f"{name:<12} {time.process_time() - started:6.1f} CPU s", flush=True)
            connection.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
