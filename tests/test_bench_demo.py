"""bench/demo.py: the demo's promise, judged on hand-made figures."""

from __future__ import annotations

from tool_runner import load_bench


def figures(untrained: float, trained: float) -> dict:
    return {"untrained": {"mAP": untrained}, "trained": {"mAP": trained}}


def test_the_promise_holds_only_inside_both_bounds():
    bench = load_bench("demo")
    assert bench.promise_failures(figures(0.10, 0.60)) == []  # both bounds are inclusive
    assert bench.promise_failures(figures(0.02, 0.91)) == []
    assert bench.promise_failures(figures(0.1001, 0.9)) == ["untrained mAP 0.1001 > 0.1"]
    assert bench.promise_failures(figures(0.05, 0.5999)) == ["trained mAP 0.5999 < 0.6"]
    assert len(bench.promise_failures(figures(0.5, 0.5))) == 2


def test_only_the_training_steps_are_rescaled_to_the_reference_speed():
    bench = load_bench("demo")
    # 300 s in all, of which 200 s trained at 390 images/s (78,000 images): at 195 images/s
    # those images take 400 s, the other 100 s stay as they were.
    assert bench.time_at_speed(300.0, 200.0, 390.0, images_per_second=195.0) == 500.0
    assert bench.time_at_speed(300.0, 200.0, 195.0, images_per_second=195.0) == 300.0
    assert bench.time_at_speed(300.0, 0.0, 0.0) == 300.0  # nothing trained: nothing to rescale
