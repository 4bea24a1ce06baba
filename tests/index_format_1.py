"""Turn a saved index version into what format 1 wrote (no content digests), to test that
indexes made before digests were kept are still read and extended."""

from __future__ import annotations

import json
import pathlib
import sqlite3

from reid.index import versioned_folder

#: The metadata table of format 1, as it was written.
FORMAT_1_SCHEMA = """
CREATE TABLE images (
    id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, pid INTEGER, camid INTEGER,
    source TEXT, captured_at TEXT, added_at TEXT NOT NULL);
CREATE INDEX images_pid ON images(pid);
CREATE INDEX images_camid ON images(camid);
"""


def _close_after(conn: sqlite3.Connection, work) -> object:
    try:
        with conn:
            return work(conn)
    finally:
        conn.close()


def write_format_1(version: pathlib.Path) -> dict:
    """Rewrite ``version`` (a version folder) in format 1; returns its new manifest."""
    table = version / "metadata.sqlite"
    rows = _close_after(sqlite3.connect(table), lambda c: c.execute(
        "SELECT id, path, pid, camid, source, captured_at, added_at FROM images").fetchall())
    table.unlink()

    def write(conn: sqlite3.Connection) -> None:
        conn.executescript(FORMAT_1_SCHEMA)
        conn.executemany("INSERT INTO images VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    _close_after(sqlite3.connect(table), write)
    manifest_path = version / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["format_version"] = 1
    manifest["files"]["metadata.sqlite"] = versioned_folder.file_record(table)
    manifest_path.write_text(json.dumps(manifest))
    return manifest
