"""Camera footage: read frames, find people, follow them, and index who was seen when and where.

The flow is one way and ends in a gallery index: :mod:`~reid.video.frames` (a video file or a
folder of frames, with their times) -> :mod:`~reid.video.detector` (people in a frame, or the
boxes of a MOTChallenge file) -> :mod:`~reid.video.tracking` (ByteTrack) ->
:mod:`~reid.video.selection` (a few good crops per track) -> :mod:`~reid.video.ingest` (embed
them, commit them to the index). :mod:`~reid.video.boxes` is the box type passed along,
:mod:`~reid.video.mot` the one reader and writer of MOTChallenge files (detections in, tracks
out, ground truth).

What an index keeps of footage is the store's and lives in :mod:`reid.index`: its tables
(:mod:`reid.index.footage`) and pictures (:mod:`reid.index.media`), the search by photo that
groups hits into passages (:mod:`reid.index.appearances`) and the pictures of its answers
(:mod:`reid.index.footage_pictures`).

Against ground truth: :mod:`~reid.video.measure` scores tracks and cross-camera search,
:mod:`~reid.video.scoring` an indexed footage set. Footage whose every person is known is drawn
by :mod:`reid.synthetic.footage`.
"""
