"""The match decision a search of this index answers with: which threshold, for which N.

A gallery-level threshold (:func:`reid.calibration.resolve_threshold`) is read for the number
of entries a stranger would meet: in a gallery of crops, every crop; in an index of footage,
every track (a track is answered as one appearance, scored by its mean embedding, see
:mod:`reid.index.appearances`), plus any images indexed beside it. One owner of that count, so
the command line, the service and the demo decide alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reid.calibration import Calibration, MatchThreshold, resolve_threshold
from reid.index.gallery import GalleryIndex
from reid.index.site_calibration import read_site_calibration


def decision_gallery(gallery: GalleryIndex) -> tuple[str, int]:
    """(kind of entry, how many) a query of ``gallery`` is decided against."""
    if gallery.footage_count == 0:
        return "crops", gallery.count
    images = gallery.count - gallery.footage_count
    return "tracks", len(gallery.footage_tracks()) + images


def match_threshold(gallery: GalleryIndex, spec: Mapping[str, Any], where: str,
                    requested: str | None = None, fpir: float | None = None,
                    site: Calibration | None = None) -> MatchThreshold | None:
    """The threshold ``requested`` (auto, pair, none, a number; None: the default) for a
    query of ``gallery`` at false-positive identification rate ``fpir``; ``site``: a
    calibration made on the index's own footage, used in place of the model's (None: the one
    stored in the index by ``tools/calibrate.py --footage``, if any)."""
    kind, size = decision_gallery(gallery)
    calibrated = requested is None or requested.strip().lower() in ("auto", "pair")
    if site is None and calibrated:  # a number or none reads no calibration, damaged or not
        site = read_site_calibration(gallery)
    return resolve_threshold(requested, spec, where, size, kind, fpir, site)
