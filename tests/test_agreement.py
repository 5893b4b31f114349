"""clear_core.agreement against textbook examples worked by hand (pure: no database, no Streamlit)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from clear_core.agreement import (
    OUTCOMES,
    agreement_with_automatic,
    annotator_stats,
    cohen_kappa,
    fleiss_kappa,
    fleiss_kappa_of,
    pairwise_kappa,
    team_summary,
)


def two_raters(yes_yes: int, yes_no: int, no_yes: int, no_no: int) -> tuple[list[str], list[str]]:
    """Two raters' labels from a 2x2 table: rater A's label first."""
    pairs = [("y", "y")] * yes_yes + [("y", "n")] * yes_no + [("n", "y")] * no_yes + [("n", "n")] * no_no
    return [a for a, _ in pairs], [b for _, b in pairs]


def test_cohen_kappa_of_wikipedias_worked_example():
    # Wikipedia, "Cohen's kappa", simple example: 50 proposals; p_o = 35/50 = 0.7; A says yes 25 times, B 30 times,
    # so p_e = 0.5*0.6 + 0.5*0.4 = 0.5 and κ = (0.7 - 0.5) / (1 - 0.5) = 0.4.
    assert cohen_kappa(*two_raters(20, 5, 10, 15)) == pytest.approx(0.4)


@pytest.mark.parametrize(
    ("table", "kappa"),
    [
        # Same p_o = 0.6, different κ (Wikipedia): p_e = 0.6*0.7 + 0.4*0.3 = 0.54 -> κ = 0.06/0.46 = 0.1304;
        ((45, 15, 25, 15), 0.06 / 0.46),
        # p_e = 0.6*0.3 + 0.4*0.7 = 0.46 -> κ = 0.14/0.54 = 0.2593.
        ((25, 35, 5, 35), 0.14 / 0.54),
    ],
)
def test_cohen_kappa_depends_on_the_marginals_not_only_on_agreement(table, kappa):
    assert cohen_kappa(*two_raters(*table)) == pytest.approx(kappa)


def test_cohen_kappa_edges():
    assert cohen_kappa(["a", "b", "c"], ["a", "b", "c"]) == pytest.approx(1.0)
    assert cohen_kappa(["a", "b"], ["b", "a"]) == pytest.approx(-1.0)  # p_o = 0, p_e = 0.5
    assert math.isnan(cohen_kappa([], []))
    assert math.isnan(cohen_kappa(["a", "a"], ["a", "a"]))  # chance agreement is already 1: undefined
    with pytest.raises(ValueError, match="same items"):
        cohen_kappa(["a"], ["a", "b"])


# Wikipedia, "Fleiss' kappa", worked example: 10 subjects, 14 raters each, 5 categories. P̄ = 0.378, P̄_e = 0.213,
# κ = 0.210 (p_j = 0.143, 0.200, 0.279, 0.150, 0.229, i.e. 20, 28, 39, 21 and 32 of the 140 ratings).
FLEISS_TABLE = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]


def test_fleiss_kappa_of_wikipedias_worked_example():
    p_bar = (1.0 + 0.253 + 0.308 + 0.440 + 0.330 + 0.462 + 0.242 + 0.176 + 0.286 + 0.286) / 10  # P_i as printed
    shares = [20 / 140, 28 / 140, 39 / 140, 21 / 140, 32 / 140]
    p_e = sum(p * p for p in shares)
    assert p_e == pytest.approx(0.213, abs=5e-4)
    assert fleiss_kappa(FLEISS_TABLE) == pytest.approx((p_bar - p_e) / (1 - p_e), abs=2e-3)
    assert fleiss_kappa(FLEISS_TABLE) == pytest.approx(0.210, abs=5e-4)


def test_fleiss_kappa_edges():
    assert fleiss_kappa([[3, 0], [0, 3], [3, 0]]) == pytest.approx(1.0)
    assert math.isnan(fleiss_kappa([[1, 0], [0, 1]]))  # nobody rated an item twice
    assert math.isnan(fleiss_kappa([[2, 0], [3, 0]]))  # one category only: chance agreement is 1
    # Items with one rating are left out: the table below is the perfect one above plus a lone rating.
    assert fleiss_kappa([[3, 0], [0, 3], [3, 0], [0, 1]]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="negative"):
        fleiss_kappa([[1, -1]])


def decisions(*lines: tuple[int, str, str, int]) -> pd.DataFrame:
    """A Store.annotator_decisions-shaped frame from (row, annotator, decision, seconds after 12:00)."""
    start = pd.Timestamp("2026-01-01 12:00:00")
    return pd.DataFrame(
        [
            {"row_index": r, "annotator": who, "decision": d, "decided_at": start + pd.Timedelta(seconds=s)}
            for r, who, d, s in lines
        ]
    )


# Two annotators on 6 shared rows plus one row each. Outcomes (remove=filter, accept/edit=correct, reject=keep):
# row:  0       1       2        3       4       5
# ann:  filter  filter  correct  keep    keep    correct(edit)
# bob:  filter  keep    correct  keep    filter  correct(accept)
# agreement 4/6; ann's marginals filter 2, correct 2, keep 2; bob's filter 2, correct 2, keep 2 ->
# p_e = 3 * (2/6 * 2/6) = 1/3, κ = (2/3 - 1/3) / (2/3) = 0.5.
TEAM = decisions(
    (0, "ann", "remove", 0),
    (1, "ann", "remove", 10),
    (2, "ann", "accept", 30),
    (3, "ann", "reject", 40),
    (4, "ann", "reject", 100),
    (5, "ann", "edit", 110),
    (6, "ann", "remove", 120),
    (0, "bob", "remove", 5),
    (1, "bob", "reject", 25),
    (2, "bob", "accept", 45),
    (3, "bob", "reject", 65),
    (4, "bob", "remove", 85),
    (5, "bob", "accept", 105),
    (7, "bob", "reject", 125),
)


def test_outcomes_follow_the_automatic_actions_words():
    assert OUTCOMES == {"remove": "filter", "accept": "correct", "edit": "correct", "reject": "keep"}


def test_pairwise_kappa_on_shared_rows_only():
    pairs = pairwise_kappa(TEAM)
    assert pairs.to_dict("records") == [
        {
            "annotator_a": "ann",
            "annotator_b": "bob",
            "n_rows": 6,
            "agreement": pytest.approx(4 / 6),
            "kappa": pytest.approx(0.5),
        }
    ]


def test_fleiss_kappa_of_two_raters_is_scotts_pi():
    # With two raters Fleiss' κ pools both raters' marginals (Scott's π): p_j = 4/12 each -> P̄_e = 1/3; P̄ = 4/6.
    kappa, n_rows = fleiss_kappa_of(TEAM)
    assert n_rows == 6 and kappa == pytest.approx((4 / 6 - 1 / 3) / (1 - 1 / 3))


def test_fleiss_kappa_of_three_raters():
    three = pd.concat([TEAM, decisions((0, "cy", "remove", 0), (1, "cy", "remove", 9), (2, "cy", "edit", 20))])
    kappa, n_rows = fleiss_kappa_of(three)
    # Rows 0-2 have 3 ratings, rows 3-5 two. Counts (filter, correct, keep): [3,0,0] [2,0,1] [0,3,0] [0,0,2] [1,0,1]
    # [0,2,0]; P_i = 1, 1/3, 1, 1, 0, 1 -> P̄ = 13/18; p = (6/15, 5/15, 4/15) -> P̄_e = 77/225.
    assert n_rows == 6
    assert kappa == pytest.approx((13 / 18 - 77 / 225) / (1 - 77 / 225))


def test_annotator_stats_counts_and_median_speed():
    stats = annotator_stats(TEAM).set_index("annotator")
    # ann's gaps: 10, 20, 10, 60, 10, 10 s -> median 10; bob's: 20, 20, 20, 20, 20, 20 -> 20.
    assert stats.loc["ann"].tolist() == [7, 6, 10.0]
    assert stats.loc["bob"].tolist() == [7, 6, 20.0]
    lone = annotator_stats(decisions((0, "cy", "remove", 0)))
    assert lone["n_rows"].tolist() == [1] and math.isnan(lone["median_seconds"][0])


def test_agreement_with_the_automatic_action():
    actions = {0: "filter", 1: "filter", 2: "correct", 3: "keep", 4: "keep", 5: "keep", 6: "keep"}  # 7: unscored
    table = agreement_with_automatic(TEAM, actions).set_index("annotator")
    # ann agrees on rows 0, 1, 2, 3, 4 (5 of 7 rows with an action); bob on 0, 2, 3 (3 of 6; row 7 has no action).
    assert table.loc["ann", ["n_rows", "n_agree"]].tolist() == [7, 5]
    assert table.loc["bob", ["n_rows", "n_agree"]].tolist() == [6, 3]
    assert table.loc["ann", "agreement"] == pytest.approx(5 / 7) and table.loc["bob", "agreement"] == 0.5
    # bob vs the action on rows 0-5: outcomes f,k,c,k,f,c vs f,f,c,k,k,k: p_o = 3/6; marginals bob (f2,c2,k2),
    # auto (f2,c1,k3) -> p_e = (4 + 2 + 6)/36 = 1/3 -> κ = (1/2 - 1/3) / (2/3) = 0.25.
    assert table.loc["bob", "kappa"] == pytest.approx(0.25)


def test_an_unknown_decision_is_a_bug():
    with pytest.raises(ValueError, match="undo"):
        pairwise_kappa(decisions((0, "ann", "undo", 0)))


def test_team_summary_joins_counts_speed_and_agreement():
    actions = {0: "filter", 1: "filter", 2: "correct", 3: "keep", 4: "keep", 5: "keep", 6: "keep"}
    summary = team_summary(TEAM, actions)
    people = summary["annotators"].set_index("annotator")
    assert people.loc["ann", ["n_rows", "n_shared", "median_seconds"]].tolist() == [7, 6, 10.0]
    assert people.loc["bob", "agreement"] == 0.5 and people.loc["bob", "kappa"] == pytest.approx(0.25)
    assert summary["pairs"]["kappa"].tolist() == [pytest.approx(0.5)] and summary["fleiss_rows"] == 6
    empty = team_summary(TEAM.iloc[0:0], actions)
    assert empty["annotators"].empty and empty["pairs"].empty and math.isnan(empty["fleiss"])
