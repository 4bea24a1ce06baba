"""The re-id network (MobileNetV2 + BNNeck head), its exported embedder and the loader."""

from reid.modeling.backbone import ModelError, build_backbone, rebuild_backbone
from reid.modeling.embedder import (Embedder, export_embedder, make_spec, resolve_model_dir,
                                    weights_fingerprint)
from reid.modeling.layers import GeMPooling2D, L2Normalize
from reid.modeling.reid_model import EMBEDDING, FEATURES, LOGITS, ReidModels, build_reid_model

__all__ = [
    "EMBEDDING", "FEATURES", "LOGITS", "Embedder", "GeMPooling2D", "L2Normalize", "ModelError",
    "ReidModels", "build_backbone", "build_reid_model", "export_embedder", "make_spec",
    "rebuild_backbone", "resolve_model_dir", "weights_fingerprint",
]
