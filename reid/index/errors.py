"""Errors of the gallery index: ReidErrors (and ValueErrors), so the tools report them in one
line and the service as a 4xx."""

from __future__ import annotations

from reid.errors import ReidError


class GalleryError(ReidError, ValueError):
    """Bad input to the gallery index or its tools; the message names the file, folder or value."""


class IndexMismatchError(GalleryError):
    """The index was built by another model (fingerprint or embedding size) than the one asked."""


class IndexTrainingError(GalleryError):
    """An index type that needs training (IVF-PQ) was given too few vectors to train on."""


class CorruptIndexError(GalleryError):
    """A file of a saved index is missing, truncated or disagrees with the manifest."""
