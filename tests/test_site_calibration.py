"""Self-calibration on a footage index without labels (reid.index.site_calibration and
tools/calibrate.py --footage): which pairs of tracks are two people, the guard against one
person tracked twice, the gallery rule fitted on pooled scores, and the calibration stored in
the index, where its queries find it."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from reid.calibration import AUTO_FAR, DEFAULT_FPIR, CalibrationError, far_key
from reid.evaluation.verification import threshold_at_far
from reid.index import GalleryIndex, ModelInfo, media
from reid.index import versioned_folder as vf
from reid.index.decision import match_threshold
from reid.index.footage import FootageEntry, TrackRecord, VideoRecord
from reid.index.gallery import MANIFEST_FILE, SITE_CALIBRATION_KEY
from reid.index.site_calibration import (box_at, box_overlap, boxes_meet,
                                         calibrate_footage, calibrate_index, co_occurring_pairs,
                                         fit_pooled_rule, footage_pairs, genuine_pairs,
                                         largest_resolved_gallery, pool_needed,
                                         read_site_calibration, simulated_maxima,
                                         write_site_calibration)
from tool_runner import tool_main

DIM = 16
MODEL = ModelInfo(fingerprint="e" * 64, embedding_dim=DIM, model_dir="/models/e")


def _track(camera: str, track: int, start: float, end: float, video: str = "/v/1.avi"
           ) -> TrackRecord:
    return TrackRecord(camera, track, video, int(start * 10), int(end * 10), start, end, 10)


# --- which pairs of tracks are two people ------------------------------------------------------

def test_tracks_seen_at_once_in_one_camera_and_video_are_two_people():
    tracks = [
        _track("A", 0, 0.0, 5.0),
        _track("A", 1, 3.0, 9.0),     # overlaps A0 for 2 s: a pair
        _track("A", 2, 9.0, 12.0),    # touches A1 (9.0): not at once
        _track("A", 3, 13.0, 14.0),   # after everyone
        _track("A", 4, 4.7, 6.0),     # A0 for 0.3 s (too short), A1 for 1.3 s
        _track("B", 0, 0.0, 5.0),     # another camera at the same time: maybe the same person
        _track("A", 5, 0.0, 5.0, video="/v/2.avi"),  # A's other video: another clock
        _track("A", 6, 1.0, 2.0, video="/v/2.avi"),  # inside A5
    ]
    pairs = [(a.camera, a.track, b.track) for a, b in co_occurring_pairs(tracks, 0.5)]
    assert pairs == [("A", 0, 1), ("A", 1, 4), ("A", 5, 6)]
    # At any overlap A0 and A4 count too; touching never does.
    pairs = [(a.track, b.track) for a, b in co_occurring_pairs(tracks, 0.0)]
    assert pairs == [(0, 1), (0, 4), (1, 4), (5, 6)]


def test_co_occurring_pairs_are_those_of_a_brute_force_loop():
    rng = np.random.default_rng(0)
    starts = rng.uniform(0, 60, 80)
    tracks = [_track(str(rng.choice(["A", "B"])), i, float(s), float(s + rng.uniform(0, 8)),
                     video=f"/v/{rng.integers(2)}.avi") for i, s in enumerate(starts)]
    for min_overlap in (0.0, 0.5, 2.0):
        brute = sorted((a.camera, a.track, b.track) for a, b in itertools.combinations(tracks, 2)
                       if a.camera == b.camera and a.video == b.video and a.track < b.track
                       and min(a.end, b.end) - max(a.start, b.start) >= min_overlap
                       and min(a.end, b.end) > max(a.start, b.start))
        found = [(a.camera, a.track, b.track) for a, b in co_occurring_pairs(tracks, min_overlap)]
        assert found == brute and len(brute) > 10


# --- the guard: one person tracked twice ------------------------------------------------------

PERSON = (100.0, 50.0, 140.0, 170.0)  # 40 x 120


def test_box_overlap_is_the_share_of_the_smaller_box_covered():
    assert box_overlap(PERSON, PERSON) == 1.0
    assert box_overlap(PERSON, (100, 50, 140, 110)) == 1.0          # upper half inside
    assert box_overlap(PERSON, (130, 50, 170, 170)) == pytest.approx(0.25)  # side by side
    assert box_overlap(PERSON, (140, 50, 180, 170)) == 0.0          # touching
    assert box_overlap((0, 0, 10, 10), (5, 5, 25, 25)) == pytest.approx(25 / 100)


def test_box_at_interpolates_between_samples_and_holds_briefly_beyond():
    samples = [(2.0, (0, 0, 10, 20)), (0.0, (100, 0, 110, 20))]
    assert box_at(samples, 1.0).tolist() == [50, 0, 60, 20]
    assert box_at(samples, 2.4).tolist() == [0, 0, 10, 20]
    assert box_at(samples, -0.5).tolist() == [100, 0, 110, 20]
    assert box_at(samples, 2.6) is None and box_at(samples, -0.6) is None


def test_the_guard_takes_nested_and_seam_split_boxes_for_one_person():
    whole = [(t, (100 + 10 * t, 50, 140 + 10 * t, 170)) for t in (0.0, 3.0, 6.0)]
    # A duplicate detection of the upper body, sampled at other times (interpolated).
    upper = [(t, (102 + 10 * t, 52, 138 + 10 * t, 105)) for t in (1.2, 4.1)]
    assert boxes_meet(whole, upper)
    # The two halves a tile seam cut, sharing the tiles' 40-pixel overlap strip.
    top = [(1.0, (110, 50, 150, 130))]
    bottom = [(1.0, (110, 90, 150, 170))]
    assert boxes_meet(top, bottom)
    # Two people walking side by side, a quarter of a box apart.
    beside = [(t, (130 + 10 * t, 50, 170 + 10 * t, 170)) for t in (0.5, 3.5)]
    assert not boxes_meet(whole, beside)
    # Someone later where the first person had been: never at the same time.
    later = [(9.0, (100, 50, 140, 170))]
    assert not boxes_meet(whole, later)
    # ... unless within the half second a box is held beyond its last sample.
    assert boxes_meet(whole, [(6.4, (160, 50, 200, 170))])
    assert not boxes_meet(whole, [(6.6, (160, 50, 200, 170))])


def _crop(track: int, time: float, i: int = -1) -> FootageEntry:
    return FootageEntry("crop", "A", track, int(time * 10), time, PERSON, 0.9, "x.jpg", None, i)


def test_genuine_pairs_are_crops_of_a_track_far_apart_in_time():
    crops = [_crop(0, t, i) for i, t in enumerate([0.0, 1.0, 2.5, 4.0])]
    assert genuine_pairs(crops, 2.0) == [(0, 2), (0, 3), (1, 3)]
    assert genuine_pairs(crops, 5.0) == []


# --- the gallery rule from pooled scores -------------------------------------------------------

def test_simulated_maxima_follow_the_best_of_n_draws():
    pool = np.arange(200) / 200.0
    maxima = simulated_maxima(pool, np.array([1, 10, 50]), probes=40000, seed=1)
    for row, n in zip(maxima, (1, 10, 50)):
        for k in (100, 180, 195):  # P(best of n <= pool[k]) = ((k + 1) / 200) ** n
            assert np.mean(row <= pool[k]) == pytest.approx(((k + 1) / 200) ** n, abs=0.01)


def test_what_a_pool_resolves():
    assert largest_resolved_gallery(1000, 0.01) == 10  # 1000 * (1 - 0.99 ** (1 / 10)) >= 1
    assert 1000 * (1 - 0.99 ** (1 / 11)) < 1 <= 1000 * (1 - 0.99 ** (1 / 10))
    for fpir in (0.2, 0.05, 0.01):
        n = pool_needed(fpir)
        assert largest_resolved_gallery(n, fpir) >= 20 > largest_resolved_gallery(n - 1, fpir)
    assert pool_needed(0.01) == 1991


def test_the_pooled_rule_cuts_where_the_best_of_n_draws_passes_at_the_rate():
    rng = np.random.default_rng(2)
    # An exponential tail: the best of N grows as ln N, what the rule's line assumes.
    pool = 0.2 + rng.exponential(0.05, 200_000)
    rule = fit_pooled_rule(pool, probes=5000)
    assert rule.fpirs == (0.2, 0.1, 0.05, 0.02, 0.01) and rule.kind == "tracks"
    assert rule.sizes == (10, 2000)  # 0.01 resolves galleries of 2,000 from 200,000 scores
    # One tail: every rate's line has its slope, shifted by ln(-ln(1 - fpir)).
    assert len(set(rule.slopes)) == 1 and rule.slopes[0] == pytest.approx(0.05, rel=0.1)
    shift = rule.intercepts[0] - rule.intercepts[-1]
    assert shift == pytest.approx(0.05 * (np.log(-np.log(0.99)) - np.log(-np.log(0.8))), rel=0.1)
    for n in (10, 20, 300, 2000):
        # P(best of n < t) = F(t) ** n = (1 - fpir): t = 0.2 - 0.05 ln(1 - (1 - fpir) ** (1/n))
        for fpir, within in ((0.1, 0.015), (0.01, 0.025)):  # 0.01 at 2,000: a score or two
            exact = 0.2 - 0.05 * np.log(1 - (1 - fpir) ** (1 / n))
            assert rule.threshold(n, fpir) == pytest.approx(exact, abs=within)
    # 1,000 scores resolve galleries of 20 only at rates of 0.02 and above.
    small = fit_pooled_rule(pool[:1000], probes=100)
    assert small.fpirs == (0.2, 0.1, 0.05, 0.02) and small.sizes == (10, 20)
    assert fit_pooled_rule(pool[:50], probes=10) is None


# --- a footage index -------------------------------------------------------------------------

def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def _add_video(gallery: GalleryIndex, index_dir, camera: str, people: int, seed: int,
               duplicate: bool = True, seconds: float = 6.0) -> np.ndarray:
    """A video of ``camera`` with ``people`` tracks seen at once (each in a column of its own,
    3 crops 0, 3 and 6 s in, and the mean), and with ``duplicate`` a second track of person 0,
    its upper body: returns the people's directions."""
    rng = np.random.default_rng(seed)
    directions = _unit(rng.standard_normal((people, DIM)))
    thumb = media.store(index_dir, media.encode_jpeg(np.full((8, 4, 3), 9, np.uint8)))
    first = gallery.next_track(camera)
    path = f"/videos/{camera}-{seed}.avi"
    tracks, entries, vectors = [], [], []
    owners = [*range(people), *([0] if duplicate else [])]
    for local, person in enumerate(owners):
        number = first + local
        x = 50.0 * person
        box = (x, 10.0, x + 40, 130.0) if local < people else (x + 2, 12.0, x + 38, 60.0)
        tracks.append(TrackRecord(camera, number, path, 0, int(seconds * 10), 0.0, seconds, 60))
        crops = _unit(directions[person] + 0.3 * rng.standard_normal((3, DIM)))
        for j, (t, crop) in enumerate(zip((0.0, seconds / 2, seconds), crops)):
            entries.append(FootageEntry("crop", camera, number, int(t * 10), t, box, 0.9, thumb))
            vectors.append(crop)
        entries.append(FootageEntry("track", camera, number, 30, seconds / 2, box, 0.9, thumb))
        vectors.append(_unit(crops.mean(axis=0)))
    record = VideoRecord(path, camera, 10.0, 640, 360, int(seconds * 10) + 1, True)
    gallery.add_footage(record, tracks, entries, np.stack(vectors))
    return directions


@pytest.fixture
def footage_index(tmp_path):
    """Two cameras of 26 people seen at once and a duplicate track of one of them (351 pairs
    of tracks each, one of them one person twice): enough pairs for the default decisions."""
    index_dir = tmp_path / "footage"
    gallery = GalleryIndex(MODEL)
    _add_video(gallery, index_dir, "A", 26, seed=1)
    _add_video(gallery, index_dir, "B", 26, seed=2)
    gallery.save(index_dir)
    return index_dir


def _brute_force(gallery: GalleryIndex) -> tuple[list[float], list[float], list[float]]:
    """Impostor crop pairs, crop-to-other-track-mean scores and genuine crop pairs, counted
    the slow way: every two tracks of one camera other than a person's duplicate."""
    entries = gallery.footage_entries(gallery.ids.tolist())
    by_track: dict = {}
    for e in entries.values():
        by_track.setdefault((e.camera, e.track), []).append(e)
    impostor, to_mean, genuine = [], [], []

    stored = dict(zip(gallery.ids.tolist(), gallery.vectors.astype(np.float64)))

    def vec(e):
        return stored[e.id]

    for (ka, ea), (kb, eb) in itertools.combinations(sorted(by_track.items()), 2):
        if ka[0] != kb[0] or {ka[1], kb[1]} == {0, 26}:
            continue  # another camera, or person 0 and their duplicate (track 26)
        ca = [e for e in ea if e.kind == "crop"]
        cb = [e for e in eb if e.kind == "crop"]
        impostor += [float(vec(a) @ vec(b)) for a in ca for b in cb]
        mean_a = next(e for e in ea if e.kind == "track")
        mean_b = next(e for e in eb if e.kind == "track")
        to_mean += [float(vec(a) @ vec(mean_b)) for a in ca]
        to_mean += [float(vec(b) @ vec(mean_a)) for b in cb]
    for entries_of in by_track.values():
        crops = sorted((e for e in entries_of if e.kind == "crop"), key=lambda e: e.time)
        genuine += [float(vec(a) @ vec(b)) for a, b in itertools.combinations(crops, 2)
                    if abs(a.time - b.time) >= 2.0]
    return impostor, to_mean, genuine


def test_the_pairs_of_a_footage_index_are_those_counted_by_hand(footage_index):
    gallery = GalleryIndex.load(footage_index)
    pairs = footage_pairs(gallery)
    assert (pairs.tracks, pairs.cameras) == (54, 2)
    assert pairs.co_occurring == 2 * 27 * 26 // 2 and pairs.dropped == 2  # the duplicates
    impostor, to_mean, genuine = _brute_force(gallery)
    assert len(pairs.impostor) == 2 * 350 * 9 == len(impostor)
    assert len(pairs.track_impostor) == 2 * 350 * 6 == len(to_mean)
    np.testing.assert_allclose(np.sort(pairs.impostor), np.sort(impostor), atol=1e-6)
    np.testing.assert_allclose(np.sort(pairs.track_impostor), np.sort(to_mean), atol=1e-6)
    np.testing.assert_allclose(np.sort(pairs.genuine), np.sort(genuine), atol=1e-6)
    assert len(pairs.genuine) == 54 * 3 and pairs.genuine_tracks == 54 and pairs.probes == 162


def test_the_calibration_reads_thresholds_off_those_pairs_only(footage_index):
    gallery = GalleryIndex.load(footage_index)
    made = calibrate_footage(gallery, "idx")
    impostor, to_mean, genuine = _brute_force(gallery)
    c = made.calibration
    assert set(c.thresholds) == {"far=0.01", "far=0.001"}  # no equal-error threshold
    assert c.thresholds[far_key(AUTO_FAR)] == pytest.approx(threshold_at_far(impostor, AUTO_FAR),
                                                            abs=1e-6)
    assert c.tar["far=0.01"] == pytest.approx(np.mean(np.array(genuine) >= c.thresholds[
        "far=0.01"]))
    rule = c.gallery["tracks"]
    assert min(rule.fpirs) == 0.01 and rule.probes == 162 and made.missing() is None
    assert (c.genuine_pairs, c.impostor_pairs) == (162, 6300)
    assert "the footage of idx (54 tracks, 2 camera(s); 700 pairs" in c.source
    # The rule's 0.1 line at 20 tracks against the pool's exact best-of-20 quantile.
    exact = np.quantile(np.sort(to_mean), 0.9 ** (1 / 20))
    assert rule.threshold(20, 0.1) == pytest.approx(exact, abs=0.02)


def test_too_few_pairs_say_what_is_missing(tmp_path):
    index_dir = tmp_path / "small"
    gallery = GalleryIndex(MODEL)
    _add_video(gallery, index_dir, "A", 5, seed=3)  # 84 crop-to-track scores
    made = calibrate_footage(gallery, "small")
    assert DEFAULT_FPIR == 0.1  # what the message below asks for
    assert made.missing() == ("0.1 of absent people reported present needs 191 "
                              "crop-to-track impostor scores, found 84")
    lonely = GalleryIndex(MODEL)
    _add_video(lonely, index_dir, "A", 1, seed=4, duplicate=True)  # one person, tracked twice
    with pytest.raises(CalibrationError, match="no impostor pairs: of 2 tracks in 1 camera.*1 "
                                               "pairs are seen at once .* 1 of them"):
        calibrate_footage(lonely, "lonely")
    short = GalleryIndex(MODEL)
    _add_video(short, index_dir, "A", 3, seed=5, seconds=1.5)
    with pytest.raises(CalibrationError, match="no genuine pairs: no track of 4 has two crops "
                                               "2 s or more apart"):
        calibrate_footage(short, "short")


# --- stored in the index, used by its queries --------------------------------------------------

def test_the_stored_calibration_is_read_by_queries_and_kept_by_later_saves(footage_index):
    assert read_site_calibration(footage_index) is None
    stored = calibrate_index(footage_index)
    assert stored.version.name == "v000002" and stored.gallery_size == 54
    gallery = GalleryIndex.load(footage_index, verify=True)  # the new version checks out
    site = read_site_calibration(gallery)
    assert site == stored.footage.calibration == read_site_calibration(footage_index)
    threshold = match_threshold(gallery, {}, "model")  # a model without any calibration
    assert threshold.value == site.gallery["tracks"].threshold(54, DEFAULT_FPIR)
    assert "calibrated on the footage of" in threshold.origin
    assert match_threshold(gallery, {}, "model", "pair").value == site.thresholds["far=0.01"]
    # Appending footage keeps it (N follows the index), and so does any other save.
    _add_video(gallery, footage_index, "C", 5, seed=6)
    gallery.save(footage_index)
    again = GalleryIndex.load(footage_index)
    assert read_site_calibration(again) == site
    assert match_threshold(again, {}, "m").value == site.gallery["tracks"].threshold(
        60, DEFAULT_FPIR)
    # Forgotten on request; a rebuilt index starts without one.
    write_site_calibration(footage_index, None)
    assert read_site_calibration(footage_index) is None
    write_site_calibration(footage_index, site)
    assert GalleryIndex.load(footage_index).site_calibration is not None
    GalleryIndex(MODEL).save(footage_index, overwrite=True)
    assert GalleryIndex.load(footage_index).site_calibration is None


def test_an_interrupted_write_leaves_the_previous_calibration(footage_index, monkeypatch):
    first = calibrate_index(footage_index).footage.calibration

    def killed(folder, version):
        raise KeyboardInterrupt

    monkeypatch.setattr(vf, "_swap_pointer", killed)
    with pytest.raises(KeyboardInterrupt):
        write_site_calibration(footage_index, None)
    assert read_site_calibration(footage_index) == first
    assert sorted(p.name for p in footage_index.iterdir() if p.name.startswith("v")) == [
        "v000002"]


def test_a_damaged_entry_is_named(footage_index):
    version = calibrate_index(footage_index).version
    manifest = json.loads((version / MANIFEST_FILE).read_text())
    manifest[SITE_CALIBRATION_KEY]["thresholds"] = "high"
    (version / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(CalibrationError, match="manifest's site_calibration: unreadable "
                                               "calibration .* tools/calibrate.py"):
        read_site_calibration(footage_index)


# --- the tool ----------------------------------------------------------------------------------

def test_calibrate_footage_tool(footage_index, capsys):
    assert tool_main("calibrate")(["--footage", str(footage_index)]) == 0
    out = capsys.readouterr().out
    site = read_site_calibration(footage_index)
    rule = site.gallery["tracks"]
    assert "footage: 54 tracks in 2 camera(s)" in out
    assert "pairs of tracks seen at once: 702 (700 kept, 2 dropped" in out
    assert "impostor pairs: 6,300 crop pairs; 4,200 crop-to-track scores from 162 crops" in out
    assert "genuine pairs: 162 crop pairs of 54 tracks, 2 s or more apart" in out
    assert "resolves: false-match rates per pair 0.01, 0.001; absent people reported present " \
           "0.2 to 0.01 (galleries of 10-37 tracks measured)" in out
    assert f"per pair: threshold {site.thresholds['far=0.01']:.4f} at false-match rate 0.01" in out
    for fpir in (0.1, 0.01):
        assert (f"gallery of 54 tracks: threshold {rule.threshold(54, fpir):.4f} at "
                f"{fpir:g} of absent people reported present (extrapolated: measured up to 37 "
                f"tracks)") in out
    assert f"stored in {footage_index} (version v000002)" in out


@pytest.mark.parametrize("make, args, message", [
    ("crops", [], "{index}: no footage in the index"),
    ("small", [], "{index}: too few pairs to calibrate on: 0.1 of absent people reported "
                  "present needs 191 crop-to-track impostor scores, found 84"),
    ("none", [], "{index}: not a gallery index"),
    ("small", ["--model", "m"], "--footage calibrates on the index's stored embeddings; it takes "
                                "no --model"),
])
def test_calibrate_footage_tool_errors(make, args, message, tmp_path, capsys):
    index_dir = tmp_path / "index"
    gallery = GalleryIndex(MODEL)
    if make == "small":
        _add_video(gallery, index_dir, "A", 5, seed=3)
    if make == "crops":
        gallery.add([str(tmp_path / "a.jpg")], _unit(np.ones((1, DIM))))
    if make != "none":
        gallery.save(index_dir)
    else:
        index_dir.mkdir()
    assert tool_main("calibrate")(["--footage", str(index_dir), *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: " + message.format(index=index_dir)) and err.count("\n") == 1
    if make != "none":
        assert GalleryIndex.load(index_dir).site_calibration is None
        assert vf.live_version(index_dir) == "v000001"  # nothing written


def test_calibrate_tool_wants_a_model_for_labelled_data(tmp_path, capsys):
    assert tool_main("calibrate")(["--data-root", str(tmp_path)]) == 1
    assert capsys.readouterr().err == ("error: --data-root calibrates a model's thresholds: give "
                                       "the model (--model)\n")
    with pytest.raises(SystemExit):
        tool_main("calibrate")(["--data-root", str(tmp_path), "--footage", str(tmp_path)])
    assert "not allowed with argument" in capsys.readouterr().err
