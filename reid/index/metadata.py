"""The gallery's metadata table: one SQLite row per indexed image, keyed by its FAISS id.

The table lives in an in-memory database while the index is open and is copied whole (SQLite's
online backup) into each saved version, so a saved file is never modified in place: saving a
new version cannot damage the one readers are using (see :mod:`reid.index.versioned_folder`).
SQLite rather than a JSON or CSV file because removal and filtering by person or camera are
queries, and any SQLite client can inspect a gallery.
"""

from __future__ import annotations

import dataclasses
import pathlib
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np

from reid.index import footage
from reid.index.errors import CorruptIndexError

TABLE = "images"
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id INTEGER PRIMARY KEY,      -- the FAISS id; never reused
    path TEXT NOT NULL UNIQUE,   -- absolute path of the crop, symlinks resolved
    pid INTEGER,                 -- person id when known (NULL otherwise)
    camid INTEGER,               -- camera when known
    source TEXT,                 -- where the crop came from (video, site), when given
    captured_at TEXT,            -- capture time as given (ISO 8601 recommended)
    added_at TEXT NOT NULL,      -- when it was indexed, ISO 8601 UTC
    digest TEXT                  -- SHA-256 of the file's bytes; NULL: not known
);
CREATE INDEX IF NOT EXISTS {TABLE}_pid ON {TABLE}(pid);
CREATE INDEX IF NOT EXISTS {TABLE}_camid ON {TABLE}(camid);
"""
DIGEST_INDEX = f"CREATE INDEX IF NOT EXISTS {TABLE}_digest ON {TABLE}(digest);"
COLUMNS = ("id", "path", "pid", "camid", "source", "captured_at", "added_at", "digest")
#: The table of format version 1, before digests: read, and given the column, on load.
LEGACY_COLUMNS = COLUMNS[:-1]
# SQLite limits the parameters of one statement; stay well below every build's limit.
_CHUNK = 500


@dataclasses.dataclass(frozen=True)
class ImageEntry:
    """One indexed image and what is known about it."""

    id: int
    path: str
    pid: int | None = None
    camid: int | None = None
    source: str | None = None
    captured_at: str | None = None
    added_at: str = ""
    digest: str | None = None


def _chunks(values: Sequence, size: int = _CHUNK) -> Iterator[Sequence]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _placeholders(n: int) -> str:
    return ",".join("?" * n)


class MetadataStore:
    """The ``images`` table, held in memory; see the module docstring."""

    def __init__(self) -> None:
        # Usable from any one thread at a time (a server answers in worker threads; it
        # serialises its requests, as the embedder needs too).
        self._conn = sqlite3.connect(":memory:", check_same_thread=False)
        self._conn.executescript(SCHEMA + DIGEST_INDEX)
        footage.create(self._conn)

    @property
    def connection(self) -> sqlite3.Connection:
        """The database, for :mod:`reid.index.footage`'s tables."""
        return self._conn

    @classmethod
    def load(cls, path: str | pathlib.Path, legacy: bool = False) -> MetadataStore:
        """Copy a saved table into memory; errors name the file.

        ``legacy``: the file may be a format-1 table, without digests; it is given the
        ``digest`` column (empty) in memory, and the next save writes the current table.
        """
        path = pathlib.Path(path)
        if not path.is_file():
            raise CorruptIndexError(f"{path}: metadata database missing")
        store = cls()
        try:
            source = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            try:
                source.backup(store._conn)
            finally:
                source.close()
            columns = [row[1] for row in store._conn.execute(f"PRAGMA table_info({TABLE})")]
        except sqlite3.Error as exc:
            store.close()
            raise CorruptIndexError(f"{path}: cannot read the metadata database ({exc})") \
                from None
        if legacy and tuple(columns) == LEGACY_COLUMNS:
            with store._conn:
                store._conn.execute(f"ALTER TABLE {TABLE} ADD COLUMN digest TEXT")
                store._conn.execute(DIGEST_INDEX)
            columns.append("digest")
        if tuple(columns) != COLUMNS:
            store.close()
            raise CorruptIndexError(f"{path}: metadata table {TABLE!r} has columns {columns}, "
                                    f"expected {list(COLUMNS)}")
        footage.create(store._conn)  # formats before 3 have no footage tables
        return store

    def save(self, path: str | pathlib.Path) -> None:
        """Write the table to a new file at ``path`` (which must not exist yet)."""
        target = sqlite3.connect(str(path))
        try:
            self._conn.backup(target)
        finally:
            target.close()

    def close(self) -> None:
        self._conn.close()

    def count(self) -> int:
        return int(self._conn.execute(f"SELECT COUNT(*) FROM {TABLE}").fetchone()[0])

    def ids(self) -> np.ndarray:
        """Every id, ascending."""
        rows = self._conn.execute(f"SELECT id FROM {TABLE} ORDER BY id").fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def existing_paths(self, paths: Sequence[str]) -> set[str]:
        """Those of ``paths`` already in the table."""
        found: set[str] = set()
        for chunk in _chunks(list(paths)):
            rows = self._conn.execute(
                f"SELECT path FROM {TABLE} WHERE path IN ({_placeholders(len(chunk))})", chunk)
            found.update(r[0] for r in rows)
        return found

    def ids_by_digest(self, digests: Sequence[str]) -> dict[str, int]:
        """For those of ``digests`` already in the table, the (lowest) id holding each."""
        found: dict[str, int] = {}
        for chunk in _chunks(list(digests)):
            rows = self._conn.execute(
                f"SELECT digest, MIN(id) FROM {TABLE} "
                f"WHERE digest IN ({_placeholders(len(chunk))}) GROUP BY digest", chunk)
            found.update((d, int(i)) for d, i in rows)
        return found

    def without_digest(self) -> list[ImageEntry]:
        """Entries with no digest recorded, by id."""
        rows = self._conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM {TABLE} WHERE digest IS NULL ORDER BY id")
        return [ImageEntry(*row) for row in rows]

    def set_digests(self, digests: Mapping[int, str]) -> None:
        with self._conn:
            self._conn.executemany(f"UPDATE {TABLE} SET digest = ? WHERE id = ?",
                                   [(d, int(i)) for i, d in digests.items()])

    def set_paths(self, paths: Mapping[int, str]) -> None:
        """Give entries new paths, all in one transaction: paths may be swapped among the
        entries, but a path held by an entry not in ``paths`` is an IntegrityError."""
        with self._conn:
            # Two steps, so that moving A to B and B to A does not collide half-way.
            self._conn.executemany(f"UPDATE {TABLE} SET path = ? WHERE id = ?",
                                   [(f"\0moving {i}", int(i)) for i in paths])
            self._conn.executemany(f"UPDATE {TABLE} SET path = ? WHERE id = ?",
                                   [(p, int(i)) for i, p in paths.items()])

    def paths_under(self, root: str) -> dict[int, str]:
        """Entries whose path is ``root`` or inside the folder ``root``: id -> path."""
        prefix = root.rstrip("/") + "/"
        rows = self._conn.execute(
            f"SELECT id, path FROM {TABLE} WHERE path = ? OR substr(path, 1, ?) = ?",
            (root, len(prefix), prefix))
        return {int(i): p for i, p in rows}

    def insert(self, entries: Iterable[ImageEntry]) -> None:
        rows = [dataclasses.astuple(e) for e in entries]
        with self._conn:
            self._conn.executemany(
                f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) "
                f"VALUES ({_placeholders(len(COLUMNS))})", rows)

    def select_ids(self, paths: Sequence[str] | None = None, pids: Sequence[int] | None = None,
                   camids: Sequence[int] | None = None) -> np.ndarray:
        """Ids of entries matching every given filter (any value within one filter), ascending.

        With no filter at all nothing matches: selecting everything by omission is too easy to
        do by mistake when the result is about to be deleted.
        """
        filters: list[tuple[str, list]] = [(col, list(values)) for col, values in
                                           (("path", paths), ("pid", pids), ("camid", camids))
                                           if values is not None]
        if not filters:
            return np.zeros(0, np.int64)
        selected: set[int] | None = None
        for column, values in filters:
            ids: set[int] = set()
            for chunk in _chunks(values):
                rows = self._conn.execute(
                    f"SELECT id FROM {TABLE} WHERE {column} IN ({_placeholders(len(chunk))})",
                    chunk)
                ids.update(r[0] for r in rows)
            selected = ids if selected is None else selected & ids
        return np.array(sorted(selected or ()), dtype=np.int64)

    def camera_ids(self, camid: int) -> np.ndarray:
        rows = self._conn.execute(f"SELECT id FROM {TABLE} WHERE camid = ?", (int(camid),))
        return np.array([r[0] for r in rows], dtype=np.int64)

    def delete(self, ids: Sequence[int]) -> None:
        with self._conn:
            for chunk in _chunks([int(i) for i in ids]):
                self._conn.execute(
                    f"DELETE FROM {TABLE} WHERE id IN ({_placeholders(len(chunk))})", chunk)
        footage.delete(self._conn, ids)

    def get(self, ids: Iterable[int]) -> dict[int, ImageEntry]:
        """Entries by id; unknown ids are simply absent from the result."""
        wanted = sorted({int(i) for i in ids})
        out: dict[int, ImageEntry] = {}
        for chunk in _chunks(wanted):
            rows = self._conn.execute(
                f"SELECT {', '.join(COLUMNS)} FROM {TABLE} "
                f"WHERE id IN ({_placeholders(len(chunk))})", chunk)
            for row in rows:
                out[row[0]] = ImageEntry(*row)
        return out

    def entries(self) -> list[ImageEntry]:
        """Every entry, by id."""
        rows = self._conn.execute(f"SELECT {', '.join(COLUMNS)} FROM {TABLE} ORDER BY id")
        return [ImageEntry(*row) for row in rows]
