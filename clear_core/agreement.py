"""How much reviewers agree, with each other and with the automatic action (pure: no database, no Streamlit).

For issue 9's agreement studies (a dataset's overlap asks several people to decide each row): Cohen's κ for two
raters, Fleiss' κ for more, and the per-annotator numbers the Team page shows (how many rows, how fast, how often
their decision matches the automatic action). κ reads as agreement beyond chance: 1 is perfect, 0 is what chance
gives, below 0 worse than chance; it is NaN where it is undefined (no items, or chance agreement already 1).

Decisions are compared by what they do to the row, in the automatic action's words (``OUTCOMES``): ``remove`` is
a filter, ``accept`` and ``edit`` both correct the response, ``reject`` keeps it. So an annotator who accepts the
proposal and one who writes their own fix agree, as ``clear.AGREEING_DECISIONS`` has it for the automatic action.

Input frames hold one standing decision per (row, annotator), as ``Store.annotator_decisions`` returns them:
``row_index``, ``annotator``, ``decision``, ``decided_at``.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import pandas as pd

from clear_core import clear

# What a human decision does to a row, named as the automatic action that does the same (clear.AGREEING_DECISIONS).
OUTCOMES = {decision: action for action, decisions in clear.AGREEING_DECISIONS.items() for decision in decisions}

__all__ = [
    "OUTCOMES",
    "agreement_with_automatic",
    "annotator_stats",
    "cohen_kappa",
    "fleiss_kappa",
    "fleiss_kappa_of",
    "pairwise_kappa",
    "team_summary",
]


def cohen_kappa(labels_a: Sequence[Hashable], labels_b: Sequence[Hashable]) -> float:
    """Cohen's κ = (p_o − p_e) / (1 − p_e) for two raters who labelled the same items (``labels_a[i]`` and
    ``labels_b[i]`` are their labels for item i): p_o is the share of items they agree on, p_e the agreement
    expected by chance from each rater's own label frequencies. NaN for no items or when p_e is 1."""
    if len(labels_a) != len(labels_b):
        raise ValueError(f"Both raters must label the same items: {len(labels_a)} labels vs {len(labels_b)}.")
    n = len(labels_a)
    if n == 0:
        return math.nan
    observed = sum(a == b for a, b in zip(labels_a, labels_b, strict=True)) / n
    count_a, count_b = Counter(labels_a), Counter(labels_b)
    expected = sum(count_a[label] * count_b[label] for label in count_a) / (n * n)
    return math.nan if expected == 1 else (observed - expected) / (1 - expected)


def fleiss_kappa(counts: Sequence[Sequence[int]] | np.ndarray) -> float:
    """Fleiss' κ from an items x categories table: ``counts[i][j]`` raters put item i in category j.

    κ = (P̄ − P̄_e) / (1 − P̄_e), where P_i = (Σ_j n_ij² − n_i) / (n_i (n_i − 1)) is the agreement on item i, P̄
    their mean and P̄_e = Σ_j p_j² with p_j the share of all ratings in category j. Fleiss defined it for the same
    number of raters per item; items rated by fewer than two people are left out, and with different numbers per
    item this is the usual generalisation (each item's P_i from its own n_i). NaN when no item has two ratings or
    P̄_e is 1.
    """
    table = np.asarray(counts, dtype=float)
    if table.ndim != 2:
        raise ValueError("counts must be a table: one row per item, one column per category.")
    if (table < 0).any():
        raise ValueError("counts cannot be negative.")
    per_item = table.sum(axis=1)
    table, per_item = table[per_item >= 2], per_item[per_item >= 2]
    if len(table) == 0:
        return math.nan
    p_items = ((table**2).sum(axis=1) - per_item) / (per_item * (per_item - 1))
    shares = table.sum(axis=0) / per_item.sum()
    expected = float((shares**2).sum())
    return math.nan if math.isclose(expected, 1.0) else (float(p_items.mean()) - expected) / (1 - expected)


def fleiss_kappa_of(decisions: pd.DataFrame) -> tuple[float, int]:
    """Fleiss' κ over every row decided by at least two people (their ``OUTCOMES``), and how many such rows."""
    table = _outcomes(decisions)
    rated = table.groupby("row_index")["outcome"].value_counts().unstack(fill_value=0)
    rated = rated[rated.sum(axis=1) >= 2]
    return fleiss_kappa(rated.to_numpy()), len(rated)


def pairwise_kappa(decisions: pd.DataFrame) -> pd.DataFrame:
    """For every pair of annotators who decided some rows in common: ``annotator_a``, ``annotator_b``, ``n_rows``
    (rows both decided), ``agreement`` (share of them with the same outcome) and ``kappa`` (Cohen's κ on them).
    Pairs with no rows in common are left out; names in order."""
    wide = _outcomes(decisions).pivot(index="row_index", columns="annotator", values="outcome")
    lines = []
    for a, b in itertools.combinations(sorted(wide.columns), 2):
        both = wide[[a, b]].dropna()
        if both.empty:
            continue
        labels_a, labels_b = both[a].tolist(), both[b].tolist()
        agree = sum(x == y for x, y in zip(labels_a, labels_b, strict=True)) / len(both)
        lines.append((a, b, len(both), agree, cohen_kappa(labels_a, labels_b)))
    return pd.DataFrame(lines, columns=["annotator_a", "annotator_b", "n_rows", "agreement", "kappa"])


def annotator_stats(decisions: pd.DataFrame) -> pd.DataFrame:
    """Per annotator (by name): ``n_rows`` decided, ``n_shared`` of them also decided by someone else, and
    ``median_seconds``, the median time between their consecutive decisions (NaN with fewer than two). The median
    shrugs off breaks and a run of quick decisions alike; it reads as "seconds per row" while someone reviews."""
    frame = decisions[["row_index", "annotator", "decided_at"]].copy()
    frame["decided_at"] = pd.to_datetime(frame["decided_at"])
    deciders = frame.groupby("row_index")["annotator"].transform("nunique")
    lines = []
    for name, own in frame.assign(shared=deciders >= 2).groupby("annotator", sort=True):
        gaps = own["decided_at"].sort_values().diff().dt.total_seconds().dropna()
        median = float(gaps.median()) if len(gaps) else math.nan
        lines.append((name, len(own), int(own["shared"].sum()), median))
    return pd.DataFrame(lines, columns=["annotator", "n_rows", "n_shared", "median_seconds"])


def agreement_with_automatic(decisions: pd.DataFrame, actions: Mapping[int, str]) -> pd.DataFrame:
    """Per annotator: how often their decision does what the automatic action (``actions``: row_index -> 'filter'
    | 'correct' | 'keep', e.g. ``clear.decide`` at the current γ and η) would have done. Columns ``annotator``,
    ``n_rows`` (their decided rows that have an action), ``n_agree``, ``agreement`` (share; NaN for none) and
    ``kappa`` (Cohen's κ between them and the automatic action on those rows)."""
    table = _outcomes(decisions)
    table["action"] = table["row_index"].map(lambda row: actions.get(int(row)))
    table = table[table["action"].notna()]
    lines = []
    for name in sorted(set(decisions["annotator"])):
        own = table[table["annotator"] == name]
        agree = int((own["outcome"] == own["action"]).sum())
        share = agree / len(own) if len(own) else math.nan
        lines.append((name, len(own), agree, share, cohen_kappa(own["outcome"].tolist(), own["action"].tolist())))
    return pd.DataFrame(lines, columns=["annotator", "n_rows", "n_agree", "agreement", "kappa"])


def _outcomes(decisions: pd.DataFrame) -> pd.DataFrame:
    """row_index, annotator, outcome (``OUTCOMES``) of each decision; an unknown decision is a bug (ValueError)."""
    unknown = set(decisions["decision"]) - set(OUTCOMES)
    if unknown:
        raise ValueError(f"Unknown decisions {sorted(unknown)}; expected {', '.join(OUTCOMES)}.")
    return pd.DataFrame(
        {
            "row_index": decisions["row_index"].astype(int).to_numpy(),
            "annotator": decisions["annotator"].to_numpy(),
            "outcome": decisions["decision"].map(OUTCOMES).to_numpy(),
        }
    )


def team_summary(decisions: pd.DataFrame, actions: Mapping[int, str]) -> dict[str, object]:
    """Everything the Team page shows about agreement, from the people's standing decisions (decisions made one at
    a time: leave query-wide ones out, they are no one's judgement of a row) and the automatic action per row:
    ``annotators`` (``annotator_stats`` joined with ``agreement_with_automatic``: agreement, kappa), ``pairs``
    (``pairwise_kappa``), ``fleiss`` and ``fleiss_rows`` (``fleiss_kappa_of``)."""
    if decisions.empty:
        empty = pd.DataFrame(columns=["annotator", "n_rows", "n_shared", "median_seconds", "agreement", "kappa"])
        return {"annotators": empty, "pairs": pairwise_kappa(decisions), "fleiss": math.nan, "fleiss_rows": 0}
    auto = agreement_with_automatic(decisions, actions)[["annotator", "agreement", "kappa"]]
    fleiss, fleiss_rows = fleiss_kappa_of(decisions)
    return {
        "annotators": annotator_stats(decisions).merge(auto, on="annotator", how="left"),
        "pairs": pairwise_kappa(decisions),
        "fleiss": fleiss,
        "fleiss_rows": fleiss_rows,
    }
