"""Errors of the footage pipeline: ReidErrors (and ValueErrors), so a tool reports them in one
line."""

from __future__ import annotations

from reid.errors import ReidError


class FootageError(ReidError, ValueError):
    """A video, frame folder, detections file or footage argument that cannot be used; the
    message names it."""
