"""bench/accuracy.py records its rows without disturbing the rest of docs/BENCHMARKS.md."""

from __future__ import annotations

from reid.config import config_from_dict
from tool_runner import load_bench

METRICS = {"mAP": 0.5123, "rank1": 0.6, "rank5": 0.8, "rank10": 0.9, "mINP": 0.2,
           "rerank": {"mAP": 0.61, "rank1": 0.65, "rank5": 0.8, "rank10": 0.9, "mINP": 0.3}}


def test_rows_are_appended_to_the_table_and_nothing_else_moves(tmp_path):
    bench = load_bench("accuracy")
    record = tmp_path / "BENCHMARKS.md"
    record.write_text("# Benchmarks\n\nintro\n\n## Other\n\ntext\n")
    cfg = config_from_dict({"data": {"height": 128, "width": 64}, "model": {"weights": None},
                            "train": {"epochs": 7}}, name="cuhk03")
    first = bench.format_row("cuhk03", cfg, "../shared/data/cuhk03", 61.4, METRICS)
    bench.append_row(record, first)
    second = first.replace("cuhk03 |", "second |", 1)
    bench.append_row(record, second)
    text = record.read_text()
    assert text.startswith("# Benchmarks\n\nintro\n\n## Other\n\ntext\n")
    table = [line for line in text.split(bench.SECTION)[1].splitlines() if line.startswith("|")]
    assert table[2:] == [first, second]
    assert len(table[0].split("|")) == len(first.split("|"))  # as many cells as the header
    cells = [c.strip() for c in first.split("|")[1:-1]]
    assert cells[4:8] == ["random", "128x64", "7", "61"]
    assert cells[8] == "0.512" and cells[13] == "0.610"
