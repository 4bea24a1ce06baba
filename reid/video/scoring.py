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
from collections.abc import Collection, Iterable, Mapping, Sequence

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


Track = tuple[str, int]  # (camera, track number in the index)


@dataclasses.dataclass(frozen=True)
class AnswerCounts:
    """What a set of answers got right, as counts that add up over draws."""

    present_queries: int = 0  # queries of people some camera saw
    absent_queries: int = 0  # queries of people no camera saw
    reported: int = 0  # appearances reported (at or above the threshold), every query
    right: int = 0  # of those, the queried person's
    true_tracks: int = 0  # tracks of the present people queried
    recall_queries: int = 0  # present people with a track in the index
    absent_reported: int = 0  # absent people with any appearance reported
    rank1_hits: int = 0  # present people (with a track) whose best appearance is theirs
    answering_queries: int = 0  # queries with any appearance reported

    def __add__(self, other: AnswerCounts) -> AnswerCounts:
        return AnswerCounts(*(a + b for a, b in zip(dataclasses.astuple(self),
                                                    dataclasses.astuple(other))))

    @property
    def precision(self) -> float:
        return self.right / self.reported if self.reported else math.nan

    @property
    def recall(self) -> float:
        return self.right / self.true_tracks if self.true_tracks else math.nan

    @property
    def absent_present(self) -> float:
        return self.absent_reported / self.absent_queries if self.absent_queries else math.nan

    @property
    def rank1(self) -> float:
        return self.rank1_hits / self.recall_queries if self.recall_queries else math.nan

    def to_json(self) -> dict[str, float | int | None]:
        figures = {"precision": self.precision, "recall": self.recall,
                   "absent_reported_present": self.absent_present, "rank1": self.rank1}
        return {**{k: None if math.isnan(v) else v for k, v in figures.items()},
                **dataclasses.asdict(self)}


def score_answers(answers: Mapping[int, Sequence[tuple[Track, bool]]],
                  person_of: Mapping[Track, int | None],
                  absent: Collection[int]) -> AnswerCounts:
    """Score each queried person's answer against the ground truth.

    ``answers``: person -> their query's appearances, best score first, each (track, reported);
    ``person_of``: every track of the index -> its person (None: nobody's, e.g. a track of
    false detections); ``absent``: the people no camera saw. A present person's true tracks
    are every track of theirs in the index, ranked or not; an appearance of nobody's track is
    wrong for every query.
    """
    tracks_of: dict[int, int] = {}
    for person in person_of.values():
        if person is not None:
            tracks_of[person] = tracks_of.get(person, 0) + 1
    total = AnswerCounts()
    for person, ranked in answers.items():
        reported = [track for track, shown in ranked if shown]
        right = sum(person_of.get(track) == person for track in reported)
        is_absent = person in absent
        true = 0 if is_absent else tracks_of.get(person, 0)
        first_right = bool(ranked) and person_of.get(ranked[0][0]) == person
        total += AnswerCounts(
            present_queries=int(not is_absent), absent_queries=int(is_absent),
            reported=len(reported), right=right, true_tracks=true,
            recall_queries=int(true > 0), absent_reported=int(is_absent and bool(reported)),
            rank1_hits=int(true > 0 and first_right), answering_queries=int(bool(reported)))
    return total


def pooled(counts: Iterable[AnswerCounts]) -> AnswerCounts:
    """The counts of several draws together (figures are then ratios of the sums)."""
    total = AnswerCounts()
    for c in counts:
        total += c
    return total


def answer_check_text(person: int, counts: AnswerCounts) -> str:
    """One query's answer against the ground truth, in words (``counts`` of that query)."""
    if counts.absent_queries:
        verdict = "right" if not counts.reported else "wrong"
        who = "a person" if person < 0 else f"person {person}"
        return f"{who} not in the footage: {counts.reported} passages reported ({verdict})"
    return (f"person {person} has {counts.true_tracks} tracks: {counts.reported} passages "
            f"reported, {counts.right} of them theirs")
