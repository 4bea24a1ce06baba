"""Training calibrates its match thresholds on its validation split, and keeps them right when a
finished run is resumed or re-exported (on a copy of the run tests/conftest.py shares)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reid.calibration import calibrate, spec_calibration, with_calibration
from reid.data.pipeline import load_image
from reid.data.preprocessing import normalize_pixels
from reid.engine.trainer import Trainer, prepare_run_dir
from reid.evaluation.verification import pair_scores
from reid.modeling import Embedder
from reid.modeling.reid_model import NECK_LAYER
from reid.run_layout import RunLayout


@pytest.mark.slow
def test_a_run_calibrates_on_its_validation_split_and_recalibrates_a_re_export(trained_run,
                                                                              tmp_path,
                                                                              monkeypatch):
    cfg = trained_run.config
    dataset = trained_run.dataset()
    assert dataset.held_out == 5
    run = trained_run.copy(tmp_path / "run")
    first = RunLayout(run)
    # The re-exports below are not converted for LiteRT (tests/test_train.py tests that), so
    # every export here is read through Keras, as validation embedded it.
    monkeypatch.setattr(Trainer, "export_litert", lambda self, model_dir: None)

    def calibration_by_hand(model_dir):
        """The thresholds of the export's own unflipped embeddings of the validation pairs."""
        embedder = Embedder.load(model_dir, runtime="keras")
        q, g = dataset.query, dataset.gallery
        embed = lambda recs: embedder.embed(np.stack([load_image(r.path, 64, 32) for r in recs]))  # noqa: E731
        scores = pair_scores(embed(q), embed(g), [r.pid for r in q], [r.pid for r in g],
                             [r.camid for r in q], [r.camid for r in g])
        return calibrate(*scores, "by hand")

    def stored(model_dir):
        return spec_calibration(json.loads((model_dir / "spec.json").read_text()),
                                str(model_dir))

    want = calibration_by_hand(first.model)
    got = stored(first.model)
    assert "validation: 5 training identities held out" in got.source
    assert got.thresholds == pytest.approx(want.thresholds, abs=1e-5)
    # model_best/ holds the epoch of the best validation mAP, calibrated on that validation.
    assert stored(first.best_model).thresholds == pytest.approx(
        calibration_by_hand(first.best_model).thresholds, abs=1e-5)
    # Resumed as it was, a finished run keeps its export and a calibration made since ...
    spec_path = first.model / "spec.json"
    spec = json.loads(spec_path.read_text())
    site = calibrate(np.ones(5), np.zeros(200), "a site")
    spec_path.write_text(json.dumps(with_calibration(spec, site)))
    Trainer(cfg, dataset, prepare_run_dir(run, cfg, resume=True), progress=False).fit(resume=True)
    assert stored(first.model).source == "a site"
    # ... and an export made before calibration existed gets one.
    spec_path.write_text(json.dumps({k: v for k, v in spec.items()
                                     if not k.startswith("calibration")}))
    Trainer(cfg, dataset, prepare_run_dir(run, cfg, resume=True), progress=False).fit(resume=True)
    assert stored(first.model).thresholds == pytest.approx(want.thresholds, abs=1e-5)
    # Its own validation calibration from before gallery rules existed is made again, with them.
    older = json.loads(spec_path.read_text())
    assert set(older["calibration"]["gallery"]) == {"crops", "tracks"}
    older["calibration"]["gallery"] = {}
    spec_path.write_text(json.dumps(older))
    Trainer(cfg, dataset, prepare_run_dir(run, cfg, resume=True), progress=False).fit(resume=True)
    assert set(stored(first.model).gallery) == {"crops", "tracks"}
    # Re-exported as another feature without training: calibrated again, for that feature.
    centered = trained_run.config_with(model__neck_feat="centered")
    trainer = Trainer(centered, dataset, prepare_run_dir(run, centered, resume=True),
                      progress=False)
    result = trainer.fit(resume=True)
    assert len(result.history) == 2
    images = np.stack([load_image(r.path, 64, 32) for r in dataset.query])
    features = trainer.models.training_model(normalize_pixels(images),
                                             training=False)["features"].numpy()
    features -= trainer.models.training_model.get_layer(NECK_LAYER).moving_mean.numpy()
    np.testing.assert_allclose(Embedder.load(result.model_dir, runtime="keras").embed(images),
                               features / np.linalg.norm(features, axis=1, keepdims=True),
                               rtol=1e-4, atol=1e-5)
    again = calibration_by_hand(result.model_dir)
    assert stored(result.model_dir).thresholds == pytest.approx(again.thresholds, abs=1e-5)
