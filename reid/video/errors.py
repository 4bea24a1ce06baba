"""Errors of the footage pipeline: ValueErrors, so a tool reports them in one line."""

from __future__ import annotations


class FootageError(ValueError):
    """A video, frame folder, detections file or footage argument that cannot be used; the
    message names it."""
