"""How well an indexed footage set was tracked and can be searched, against its ground truth.

Two figures, each with a well-kept reference behind it: tracking per camera with motmetrics'
IDF1 and identity switches (:func:`reid.video.measure.tracking_metrics`), and cross-camera
search at track level: every track whose person is known queries the other cameras' tracks
with its stored mean embedding, and the Market-1501 mAP and rank-1 say how well the person's
other passages rank (:func:`reid.video.measure.cross_camera_map`). A track's person is the
ground-truth identity most of its boxes overlap (:func:`reid.video.measure.track_identities`),
read from the tracks ``tools/index_video.py --save-tracks`` wrote.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

from reid.index.gallery import GalleryIndex
from reid.video.errors import FootageError
from reid.video.measure import cross_camera_map, track_identities, tracking_metrics
from reid.video.mot import read_mot


@dataclasses.dataclass(frozen=True)
class FootageScores:
    tracking: dict[str, dict[str, float | int]]  # camera -> motmetrics figures
    track_map: float
    track_rank1: float
    queries: int  # tracks whose person another camera saw
    tracks: int

    @property
    def mean_idf1(self) -> float:
        values = [m["idf1"] for m in self.tracking.values()]
        return float(np.mean(values)) if values else math.nan

    @property
    def switches(self) -> int:
        return int(sum(m["num_switches"] for m in self.tracking.values()))

    def format(self) -> str:
        per_camera = ", ".join(f"{c} {m['idf1']:.3f}" for c, m in sorted(self.tracking.items()))
        return (f"tracking: IDF1 {self.mean_idf1:.3f} (per camera: {per_camera}), "
                f"{self.switches} identity switches\n"
                f"cross-camera search by track: mAP {self.track_map:.3f}, rank-1 "
                f"{self.track_rank1:.3f} ({self.queries} query tracks of {self.tracks})")


def score_footage(index_dir: str | os.PathLike, tracks_dir: str | os.PathLike,
                  ground_truth: Mapping[str, str | os.PathLike]) -> FootageScores:
    """Score the footage of ``ground_truth``'s cameras (camera -> gt.txt) in an index, with
    the tracks files in ``tracks_dir`` (``<camera>.txt``)."""
    gallery = GalleryIndex.load(index_dir)
    tracks = gallery.footage_tracks()
    tracking: dict[str, dict[str, float | int]] = {}
    vectors, pids, cameras = [], [], []
    for camera, gt_path in sorted(ground_truth.items()):
        gt = read_mot(gt_path, "ground-truth file").rows
        tracks_file = pathlib.Path(tracks_dir) / f"{camera}.txt"
        if not tracks_file.is_file():
            raise FootageError(f"{tracks_file}: no tracks of camera {camera} (scoring takes one "
                               f"video per camera, indexed with its tracks saved in "
                               f"{tracks_dir})", field="save_tracks")
        result = read_mot(tracks_file).rows
        tracking[camera] = tracking_metrics(gt, result)
        people = track_identities(gt, result)
        for (cam, track) in sorted(tracks):
            if cam != camera:
                continue
            mean = [e for e in gallery.track_entries(cam, track) if e.kind == "track"]
            vectors.append(gallery.vectors_of([mean[0].id])[0])
            pids.append(people.get(track + 1))
            cameras.append(cam)
    if vectors:
        track_map, rank1, queries = cross_camera_map(np.stack(vectors), pids, cameras)
    else:
        track_map, rank1, queries = math.nan, math.nan, 0
    return FootageScores(tracking, float(track_map), float(rank1), int(queries), len(vectors))


def track_people(tracks_dir: str | os.PathLike, ground_truth: Mapping[str, str | os.PathLike]
                 ) -> dict[tuple[str, int], int | None]:
    """(camera, track) -> the ground-truth person of each indexed track (None: nobody's),
    from the tracks files ``tools/index_video.py --save-tracks`` wrote (MOT ids are the
    index's track numbers plus one)."""
    people: dict[tuple[str, int], int | None] = {}
    for camera, gt_path in sorted(ground_truth.items()):
        found = track_identities(read_mot(gt_path, "ground-truth file").rows,
                                 read_mot(pathlib.Path(tracks_dir) / f"{camera}.txt").rows)
        people.update({(camera, track - 1): person for track, person in found.items()})
    return people


@dataclasses.dataclass(frozen=True)
class AnswerCheck:
    """A footage answer against the ground truth: the passages reported, how many of them are
    the person's, and how many tracks the person has (0: absent from the footage)."""

    person: int | None
    reported: int
    right: int
    true_tracks: int

    @property
    def precision(self) -> float:
        return self.right / self.reported if self.reported else math.nan

    @property
    def recall(self) -> float:
        return self.right / self.true_tracks if self.true_tracks else math.nan

    def text(self) -> str:
        if not self.true_tracks:
            verdict = "right" if not self.reported else "wrong"
            return (f"a person who is not in the footage: {self.reported} passages reported "
                    f"({verdict})")
        return (f"person {self.person} ({self.true_tracks} tracks): {self.reported} passages "
                f"reported, {self.right} of them theirs")


def check_answer(reported: Sequence[tuple[str, int | None]], person: int | None,
                 people: Mapping[tuple[str, int], int | None]) -> AnswerCheck:
    """Judge the passages ``reported`` ((camera, track) of each appearance answered as the
    person) for ``person`` (None: someone absent), ``people`` as :func:`track_people` gives."""
    right = sum(person is not None and people.get(key) == person for key in reported)
    true_tracks = 0 if person is None else sum(p == person for p in people.values())
    return AnswerCheck(person, len(reported), right, true_tracks)
