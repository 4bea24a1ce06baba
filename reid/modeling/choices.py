"""The choices the modeling code offers a config, named without importing TensorFlow (the
config is validated before TensorFlow loads)."""

from __future__ import annotations

#: Which feature the exported embedding is (``model.neck_feat``; see
#: :func:`reid.modeling.reid_model.build_reid_model`).
NECK_FEATURES: tuple[str, ...] = ("after", "before", "centered")
