"""Camera footage: read frames, find people, follow them, and index who was seen when and where.

The flow is one way: :mod:`~reid.video.frames` (OpenCV) -> :mod:`~reid.video.detector` ->
:mod:`~reid.video.tracking` -> :mod:`~reid.video.selection` -> :mod:`~reid.video.ingest`, which
writes into a gallery index (:mod:`reid.index`) with what :mod:`reid.index.footage` stores
per appearance (its pictures in :mod:`reid.index.media`). :mod:`reid.synthetic.footage` draws footage with known identities and
:mod:`~reid.video.measure` scores tracking and cross-camera search against it.
"""
