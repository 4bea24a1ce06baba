"""bench/recipe_speed.py: how a variant is read from the command line."""

from __future__ import annotations

import pytest

from tool_runner import load_bench


def test_variants_are_a_name_and_its_overrides():
    bench = load_bench("recipe_speed")
    assert bench.parse_variant("96x48=data.height=96,data.width=48") == (
        "96x48", ["data.height=96", "data.width=48"])
    assert bench.parse_variant("as is=") == ("as is", [])
    for bad in ("no-overrides", "=data.height=96"):
        with pytest.raises(ValueError, match="expected NAME=SECTION.KEY=VALUE"):
            bench.parse_variant(bad)
    names = [bench.parse_variant(v)[0] for v in bench.DEFAULT_VARIANTS]
    assert len(set(names)) == len(names)  # a dict of them loses none
