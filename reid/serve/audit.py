"""The service's audit log: who searched for what, kept apart from the answers."""

from __future__ import annotations

import datetime
import json
import os
import pathlib
from typing import Any


class AuditLog:
    """Who searched for what: one JSON line a search (time, client address, the query image's
    SHA-256 or the entry's id, the number of results, whether a match was reported), appended
    to a file opened ``O_APPEND`` and written with one ``write`` a line, so that concurrent
    requests never interleave and nothing earlier is rewritten."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = pathlib.Path(path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                           0o600)

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps({"time": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="milliseconds"), **record}, separators=(",", ":")) + "\n"
        data = line.encode("utf-8")
        if os.write(self._fd, data) != len(data):
            raise OSError("short write")

    def close(self) -> None:
        os.close(self._fd)
