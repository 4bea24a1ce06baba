"""The unlabelled crops of a new site, read from where the user has them: what adaptation
(:mod:`reid.engine.adapt`) trains on.

Two sources:

* **Footage indexes** (:func:`footage_target`): every crop an index stored of every track (the
  pictures in its media folder, :mod:`reid.index.media`; not the per-track mean entries, which
  have no picture of their own), with the two facts footage gives for free: the crops of one
  track are one person (must-link: the same track number), and two tracks seen at once in one
  camera are two people (cannot-link), read with the rule and the duplicate-detection guard of
  the site's self-calibration (:func:`reid.index.site_calibration.co_occurring_pairs`,
  :func:`reid.index.site_calibration.boxes_meet`). A pair the guard takes for one person
  tracked twice is neither linked: it is probably one person, but not surely.
* **Image files** (:func:`image_target`): folders, globs or files of crops
  (:func:`reid.index.build.collect_images`), each a loose crop; the camera is read from
  Market-1501 file names where they parse, else unknown.

Track numbers are unique over the whole target: tracks are numbered 0..T-1 in the order of
(index given, camera, track), and :attr:`TargetCrops.track_keys` maps each number back to
(index folder, camera, track). A camera is known by its name across indexes (the indexes of
one site, e.g. one per day, name their cameras alike), numbered 1..C in name order.

Only what the indexes stored is read, never the videos: an index keeps a few crops per track
(``video.crops_per_track``).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Sequence

from reid.data.market1501 import IMAGE_EXTENSIONS, is_image_name
from reid.index import media
from reid.index.build import collect_images, market_labels
from reid.index.errors import CorruptIndexError, GalleryError
from reid.index.footage import FootageEntry
from reid.index.gallery import GalleryIndex
from reid.index.site_calibration import Sample, co_occurring_pairs, two_people

#: Loose crops (image files) have no track.
NO_TRACK = -1
#: A crop whose camera is not known.
UNKNOWN_CAMERA = 0


@dataclasses.dataclass(frozen=True)
class TargetCrops:
    """The target's crops, one per position of ``paths``/``cameras``/``tracks``."""

    paths: tuple[str, ...]                   # image files (footage: the index's stored crops)
    cameras: tuple[int, ...]                 # camid per crop (0: unknown)
    tracks: tuple[int, ...]                  # track number, unique over the target; -1 loose
    cannot_link: frozenset[tuple[int, int]]  # (a, b), a < b: tracks seen at once in one camera
    source: str                              # what it was read from (messages, the run's record)
    #: (index folder, camera name, track) of each track number: track_keys[t] is track t.
    track_keys: tuple[tuple[str, str, int], ...] = ()
    #: Pairs of tracks seen at once that the guard took for one person tracked twice (unlinked).
    unlinked: int = 0
    #: Files named that are not images by their suffix (left out), and subfolders not searched.
    left_out: tuple[str, ...] = ()
    subfolders: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not len(self.paths) == len(self.cameras) == len(self.tracks):
            raise ValueError(f"paths, cameras and tracks differ in length: {len(self.paths)}, "
                             f"{len(self.cameras)}, {len(self.tracks)}")

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def track_count(self) -> int:
        return len({t for t in self.tracks if t != NO_TRACK})

    @property
    def camera_count(self) -> int:
        """Cameras known (crops of unknown camera do not count)."""
        return len({c for c in self.cameras if c != UNKNOWN_CAMERA})

    def summary(self) -> str:
        """One line: what the target holds, and what it knows about who is who."""
        loose = sum(t == NO_TRACK for t in self.tracks)
        parts = [f"{len(self):,} crops"]
        if self.track_count:
            parts.append(f"of {self.track_count:,} tracks")
            if loose:
                parts.append(f"and {loose:,} loose")
        cameras = self.camera_count
        unknown = sum(c == UNKNOWN_CAMERA for c in self.cameras)
        if cameras:
            parts.append(f"in {cameras} camera(s)"
                         + (f" ({unknown:,} of unknown camera)" if unknown else ""))
        else:
            parts.append("of unknown camera")
        line = " ".join(parts) + f" from {self.source}"
        if self.track_count:
            line += (f"; {len(self.cannot_link):,} pairs of tracks seen at once (two people)"
                     + (f", {self.unlinked} more taken for one person tracked twice"
                        if self.unlinked else ""))
        if self.left_out:
            line += (f"; {len(self.left_out)} file(s) left out, not images by their suffix "
                     f"(e.g. {self.left_out[0]})")
        if self.subfolders:
            line += (f"; {len(self.subfolders)} subfolder(s) not searched "
                     f"(e.g. {self.subfolders[0]})")
        return line


def _listing(items: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def footage_target(index_dirs: Sequence[str | os.PathLike]) -> TargetCrops:
    """Every stored crop of every track of the footage indexes ``index_dirs``, with must-link
    (track numbers) and cannot-link pairs (see the module docstring). A folder that is not an
    index, an index without footage, one given twice, or a stored crop whose picture is missing
    is a GalleryError naming the folder or file."""
    if not index_dirs:
        raise GalleryError("no footage index given", field="index_dirs")
    seen: dict[pathlib.Path, str] = {}
    paths: list[str] = []
    camera_of: list[str] = []
    tracks: list[int] = []
    keys: list[tuple[str, str, int]] = []
    cannot: set[tuple[int, int]] = set()
    unlinked = 0
    for given in index_dirs:
        where = os.fspath(given)
        resolved = pathlib.Path(where).resolve()
        if resolved in seen:
            raise GalleryError(f"{where}: index given twice (also as {seen[resolved]})",
                               field="index_dirs")
        seen[resolved] = where
        gallery = GalleryIndex.load(where)
        if gallery.footage_count == 0:
            raise GalleryError(f"{where}: no footage in the index (videos indexed with "
                               f"tools/index_video.py): nothing to adapt on; an index of image "
                               f"files is adapted on the files themselves")
        crops, samples = _stored_crops(gallery)
        if not crops:
            raise GalleryError(f"{where}: the index's footage has no stored crops, only track "
                               f"means: nothing to adapt on")
        number: dict[tuple[str, int], int] = {}
        for key in sorted(crops):
            number[key] = len(keys)
            keys.append((where, key[0], key[1]))
            for entry in crops[key]:
                path = media.path(where, entry.thumb)
                if not path.is_file():
                    raise CorruptIndexError(f"{path}: the picture of a stored crop (camera "
                                            f"{key[0]}, track {key[1]}) of the index {where} is "
                                            f"missing")
                paths.append(str(path))
                camera_of.append(key[0])
                tracks.append(number[key])
        usable = [t for k, t in gallery.footage_tracks().items() if k in number]
        people, dropped = two_people(co_occurring_pairs(usable), samples.__getitem__)
        unlinked += dropped  # one person tracked twice, most likely: not two people
        cannot.update(tuple(sorted((number[(a.camera, a.track)], number[(b.camera, b.track)])))
                      for a, b in people)
    names = {name: camid for camid, name in enumerate(sorted(set(camera_of)), start=1)}
    shown = _listing([os.fspath(d) for d in index_dirs])
    return TargetCrops(tuple(paths), tuple(names[c] for c in camera_of), tuple(tracks),
                       frozenset(cannot), f"the footage of {shown}", tuple(keys), unlinked)


def _stored_crops(gallery: GalleryIndex
                  ) -> tuple[dict[tuple[str, int], list[FootageEntry]],
                             dict[tuple[str, int], list[Sample]]]:
    """The crop entries of each track (camera, track) in time order, and each track's boxes
    in time (crops and mean entry), as the duplicate guard reads them
    (:func:`reid.index.site_calibration.footage_pairs` reads the same)."""
    entries = gallery.footage_entries(gallery.ids.tolist())
    crops: dict[tuple[str, int], list[FootageEntry]] = {}
    samples: dict[tuple[str, int], list[Sample]] = {}
    for e in sorted(entries.values(), key=lambda e: (e.time, e.id)):
        key = (e.camera, e.track)
        samples.setdefault(key, []).append((e.time, e.box))
        if e.kind == "crop":
            crops.setdefault(key, []).append(e)
    return crops, samples


def image_target(specs: Sequence[str | os.PathLike]) -> TargetCrops:
    """The image files of ``specs`` (folders, globs or files, as
    :func:`reid.index.build.collect_images` expands them) as loose crops; the camera from
    Market-1501 file names (:func:`reid.data.market1501.parse_market_name`) where they parse,
    else 0. Files that are not images by their suffix are left out (and counted in the
    summary); none left is a GalleryError naming what was given."""
    files = collect_images(specs)
    named = {p: os.path.basename(files.names.get(p, p)) for p in files.paths}
    images = [p for p in files.paths if is_image_name(named[p])]
    left_out = tuple(p for p in files.paths if not is_image_name(named[p]))
    shown = _listing([os.fspath(s) for s in specs])
    if not images:
        raise GalleryError(f"{shown}: no images among {len(files.paths)} file(s) (expected "
                           f"{', '.join(sorted(IMAGE_EXTENSIONS))} crops, e.g. not "
                           f"{left_out[0]})", field="images")
    _, camids = market_labels([files.names.get(p, p) for p in images])
    cameras = tuple(UNKNOWN_CAMERA if c is None else c for c in camids)
    return TargetCrops(tuple(images), cameras, (NO_TRACK,) * len(images), frozenset(),
                       f"the images of {shown}", left_out=left_out,
                       subfolders=tuple(files.subfolders))
