"""Footage answers scored against ground truth (reid.video.scoring, which bench/footage_answers.py
and the demo use), on a hand-worked case (no TensorFlow, no footage)."""

from __future__ import annotations

import math

from tool_runner import load_bench

from reid.video import scoring

# Six tracks of the index and whose they are (C:1 is nobody's: a track of false detections).
PERSON_OF = {("A", 0): 1, ("A", 1): 2, ("B", 0): 1, ("B", 1): None, ("C", 0): 3, ("C", 1): 1}
ABSENT = {8, 9}
# Each query's appearances, best first, with whether they were reported.
ANSWERS = {
    1: [(("A", 0), True), (("B", 1), True), (("C", 1), False)],  # B:0 not even ranked
    2: [(("C", 0), True), (("A", 1), True)],
    3: [(("A", 1), True), (("C", 0), True)],
    8: [(("C", 0), False)],
    9: [(("C", 0), True), (("A", 0), False)],
}


def test_the_answers_are_scored_as_worked_by_hand():
    c = scoring.score_answers(ANSWERS, PERSON_OF, ABSENT)
    # Reported: person 1 A:0 (right), B:1 (nobody's); person 2 C:0 (wrong), A:1 (right);
    # person 3 A:1 (wrong), C:0 (right); person 9 C:0 (absent: wrong). 3 right of 7.
    assert (c.reported, c.right) == (7, 3) and math.isclose(c.precision, 3 / 7)
    # True tracks: person 1 has A:0, B:0 and C:1 (ranked or not), 2 has A:1, 3 has C:0.
    assert (c.true_tracks, c.recall_queries) == (5, 3) and math.isclose(c.recall, 3 / 5)
    # Person 9 was reported present, person 8 was not.
    assert (c.absent_reported, c.absent_queries) == (1, 2) and c.absent_present == 0.5
    # Best first: person 1's A:0 is theirs; 2's C:0 and 3's A:1 are not.
    assert c.rank1_hits == 1 and math.isclose(c.rank1, 1 / 3)
    assert (c.present_queries, c.answering_queries) == (3, 4)


def test_draws_pool_by_their_counts_and_empty_figures_are_undefined():
    bench = load_bench("footage_answers")
    one = scoring.score_answers({1: ANSWERS[1], 9: ANSWERS[9]}, PERSON_OF, ABSENT)
    other = scoring.score_answers({2: ANSWERS[2], 3: ANSWERS[3], 8: ANSWERS[8]}, PERSON_OF,
                                ABSENT)
    assert scoring.pooled([one, other]) == scoring.score_answers(ANSWERS, PERSON_OF, ABSENT)
    # Pooled precision is right over reported of both, not the mean of the two precisions.
    assert math.isclose(one.precision, 1 / 3) and math.isclose(other.precision, 2 / 4)
    assert math.isclose(scoring.pooled([one, other]).precision, 3 / 7)
    silent = scoring.score_answers({8: ANSWERS[8]}, PERSON_OF, ABSENT)
    assert silent.reported == 0 and math.isnan(silent.precision) and math.isnan(silent.recall)
    assert silent.to_json()["precision"] is None and silent.absent_present == 0.0
    row = bench.table([("seed 1", "0.5000", 6, scoring.pooled([one, other]))]).splitlines()[-1]
    assert "0.429 (3/7;" in row and "0.600 (3/5; 3)" in row and "0.500 (1/2)" in row
