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
