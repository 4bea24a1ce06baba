"""The re-id network (MobileNetV2 + BNNeck head), its exports, the runtimes and the loader.

Names are imported on first use (:mod:`reid.utils.lazy`): loading a converted export through
:class:`Embedder` must not import TensorFlow, which the network's modules do.
"""

from reid.utils.lazy import lazy_exports

_HOMES = {
    "EMBEDDING": "reid.modeling.reid_model", "FEATURES": "reid.modeling.reid_model",
    "LOGITS": "reid.modeling.reid_model", "ReidModels": "reid.modeling.reid_model",
    "build_reid_model": "reid.modeling.reid_model",
    "build_backbone": "reid.modeling.backbone", "rebuild_backbone": "reid.modeling.backbone",
    "GeMPooling2D": "reid.modeling.layers", "L2Normalize": "reid.modeling.layers",
    "ModelError": "reid.modeling.errors",
    "Embedder": "reid.modeling.embedder", "resolve_model_dir": "reid.modeling.embedder",
    "load_model": "reid.modeling.embedder",
    "export_embedder": "reid.modeling.export", "make_spec": "reid.modeling.export",
    "weights_fingerprint": "reid.modeling.export",
}
__all__ = sorted(_HOMES)
__getattr__ = lazy_exports(__name__, _HOMES)
