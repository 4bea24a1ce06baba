"""Follow people from frame to frame within one video: ByteTrack, from Roboflow's ``trackers``.

Why that one: ByteTrack is the usual baseline of multi-object tracking, and ``trackers`` is
where Roboflow now keeps it (supervision, its former home, removed its trackers). norfair, the
other well-kept choice, pins ``numpy<2``, which TensorFlow 2.21's numpy cannot share. What this
module adds is the project's vocabulary: seconds instead of 30-fps frame counts for the gap that
ends a track, and boxes that belong to a confirmed track only.

ByteTrack associates high-score boxes first and low-score ones second. The detector here
already dropped boxes below ``video.score_threshold``, so both thresholds sit at that value:
every box the detector keeps may start a track, and the second stage stays idle.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from reid.config import VideoConfig
from reid.video.boxes import Detections

#: ByteTrack counts its lost-track buffer in frames of a 30 fps video, whatever the real rate.
_BYTETRACK_BUFFER_FPS = 30.0
#: Boxes a new track needs in consecutive frames before it is confirmed and gets an id.
_CONFIRM_FRAMES = 2


@dataclasses.dataclass(frozen=True)
class TrackedBoxes:
    """The confirmed tracks' boxes in one frame: ``track_ids`` (N,) int, ``boxes`` (N, 4),
    ``scores`` (N,)."""

    track_ids: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.track_ids)


class Tracker:
    """ByteTrack over one video at ``fps`` frames per second (of the frames given to it)."""

    def __init__(self, config: VideoConfig, fps: float) -> None:
        import supervision as sv
        from trackers import ByteTrackTracker

        self._sv = sv
        threshold = config.score_threshold
        self._tracker = ByteTrackTracker(
            lost_track_buffer=max(1, round(config.track_gap_seconds * _BYTETRACK_BUFFER_FPS)),
            frame_rate=fps, track_activation_threshold=threshold,
            high_conf_det_threshold=threshold, minimum_consecutive_frames=_CONFIRM_FRAMES)

    def update(self, detections: Detections, time: float) -> TrackedBoxes:
        """The boxes of the frame at ``time`` (seconds) that belong to confirmed tracks, with
        their track ids (0, 1, ... in order of confirmation). Call once per frame, with no
        detections too. The gap that ends a track is measured in ``time``, so skipped frames
        and a wrong frame rate in a video's header do not stretch it."""
        found = self._sv.Detections(xyxy=detections.boxes.astype(np.float32),
                                    confidence=detections.scores.astype(np.float32))
        tracked = self._tracker.update(found, timestamp=float(time))
        ids = np.asarray(tracked.tracker_id, np.int64).reshape(-1)
        keep = ids >= 0
        return TrackedBoxes(ids[keep], np.asarray(tracked.xyxy, np.float32)[keep],
                            np.asarray(tracked.confidence, np.float32)[keep])
