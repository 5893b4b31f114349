"""Decisions one at a time, query-wide, on duplicates, and their undos, against a model written in plain Python:
whatever the order of operations, the current decisions, their texts and ``review_progress`` agree with it."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from clear_core import store as store_module
from clear_core.permissions import Actor
from clear_core.store import ReviewQuery, Store
from tests.test_store import make_dataset

N_ROWS = 8
CONFIDENCE = [0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9]
# Row 6 has no score (accept skips it), rows 2 and 5 a blank proposal (accept skips them too).
PROPOSALS = ["P0", "P1", " \u3000\n", "P3", "P4", "\t", None, "P7"]
PEOPLE = {name: Actor(name, name, "lead") for name in ("ann", "lee")}


@dataclass
class Entry:
    decision_id: int
    row_index: int
    decision: str
    final_response: str | None
    annotator: str
    group_id: int | None = None
    undone: bool = False


class Model:
    """The decision log as a list; a row's current decision is its latest entry not undone."""

    def __init__(self) -> None:
        self.log: list[Entry] = []

    def current(self) -> dict[int, Entry]:
        now: dict[int, Entry] = {}
        for entry in self.log:
            if not entry.undone:
                now[entry.row_index] = entry
        return dict(sorted(now.items()))

    def proposal(self, row: int) -> str | None:
        text = PROPOSALS[row]
        return text if text is not None and text.strip() else None


OPERATION = st.one_of(
    st.tuples(st.just("decide"), st.sampled_from(list(PEOPLE)), st.integers(0, N_ROWS - 1),
              st.sampled_from(["accept", "reject", "remove", "edit"])),
    st.tuples(st.just("undo"), st.sampled_from(list(PEOPLE))),
    st.tuples(st.just("query"), st.sampled_from(list(PEOPLE)), st.sampled_from([0.35, 0.65, 1.0]),
              st.sampled_from(["accept", "reject", "remove"]), st.booleans()),
    st.tuples(st.just("undo_group"), st.sampled_from(list(PEOPLE))),
    st.tuples(st.just("duplicates"), st.sampled_from(list(PEOPLE)),
              st.sets(st.integers(0, N_ROWS - 1), max_size=4), st.sampled_from(["accept", "reject", "remove"])),
)  # fmt: skip


def apply(store: Store, model: Model, dataset_id: int, run_id: int, operation: tuple) -> None:
    """Do ``operation`` in the store, and what it should do in the model."""
    kind, name, *args = operation
    actor = PEOPLE[name]
    if kind == "decide":
        row, decision = args
        if decision == "accept" and model.proposal(row) is None:
            return  # the Review page offers no accept without a proposal
        final = {"accept": PROPOSALS[row], "edit": f"edit {row}"}.get(decision)
        decision_id = store.record_decision(
            dataset_id, row, decision, run_id=run_id, actor=actor,
            final_response=final if decision == "edit" else None,
        )  # fmt: skip
        model.log.append(Entry(decision_id, row, decision, final, name))
    elif kind == "undo":
        undone = store.undo_last_decision(dataset_id, actor)
        mine = [e for e in model.log if e.annotator == name and e.group_id is None and not e.undone]
        assert (undone and undone["decision_id"]) == (mine[-1].decision_id if mine else None)
        if mine:
            mine[-1].undone = True
    elif kind == "query":
        max_confidence, decision, undecided_only = args
        query = ReviewQuery(
            run_id, 0.5, 0.8, max_confidence=max_confidence, status="undecided" if undecided_only else None
        )
        current = model.current()
        rows = [
            r
            for r in range(N_ROWS)
            if PROPOSALS[r] is not None and CONFIDENCE[r] <= max_confidence
            and not (undecided_only and r in current)
            and (decision != "accept" or model.proposal(r) is not None)
        ]  # fmt: skip
        assert store.review_count(query, decision) == len(rows)
        group_id, n = store.decide_query(query, decision, actor=actor)
        assert n == len(rows) and (group_id is None) == (not rows)
        decided = store.decision_log(dataset_id).tail(n)
        assert decided["row_index"].tolist() == rows  # in row order
        for r, decision_id in zip(rows, decided["decision_id"], strict=True):
            final = PROPOSALS[r] if decision == "accept" else None
            model.log.append(Entry(int(decision_id), r, decision, final, name, group_id))
    elif kind == "undo_group":
        group = store.last_group(dataset_id)
        if group is None:
            return
        expected = [e for e in model.log if e.group_id == group["group_id"] and not e.undone]
        assert store.undo_group(group["group_id"], actor=actor) == len(expected)
        for entry in expected:
            entry.undone = True
    elif kind == "duplicates":
        rows, decision = args
        n = store.decide_duplicates(dataset_id, rows, decision, run_id=run_id, actor=actor)
        taken = sorted(r for r in rows if decision != "accept" or model.proposal(r) is not None)
        assert n == len(taken)
        decided = store.decision_log(dataset_id).tail(n)
        for r, decision_id in zip(taken, decided["decision_id"], strict=True):
            final = PROPOSALS[r] if decision == "accept" else None
            model.log.append(Entry(int(decision_id), r, decision, final, name))


@settings(max_examples=25, deadline=None)
@given(st.lists(OPERATION, min_size=1, max_size=10))
def test_any_sequence_of_decisions_and_undos_agrees_with_the_model(operations):
    with Store(":memory:") as store:
        dataset_id = store.add_dataset(make_dataset(N_ROWS))
        run_id = store.create_run(dataset_id, "m", {})
        store.add_scores(
            run_id,
            [
                {"row_index": i, "confidence": c, "correction_confidence": 0.9, "proposed_response": p}
                for i, (c, p) in enumerate(zip(CONFIDENCE, PROPOSALS, strict=True))
                if p is not None
            ],
        )
        model = Model()
        for operation in operations:
            apply(store, model, dataset_id, run_id, operation)
            expected = model.current()
            current = store.current_decisions(dataset_id)
            assert current["row_index"].tolist() == list(expected)
            assert current["decision_id"].tolist() == [e.decision_id for e in expected.values()]
            assert current["decision"].tolist() == [e.decision for e in expected.values()]
            texts = [None if pd.isna(t) else t for t in current["final_response"]]
            assert texts == [e.final_response for e in expected.values()]
            assert current["annotator"].tolist() == [e.annotator for e in expected.values()]
            assert store.review_progress(run_id) == (len(expected), N_ROWS)


def test_a_proposal_is_blank_in_sql_exactly_when_python_strips_it_to_nothing(tmp_path):
    """Bulk accept and accept-on-duplicates skip blank proposals; SQL must agree with str.strip() on every
    character it strips, and on look-alikes it keeps (NUL, BOM, zero-width space)."""
    blank = [c * 2 for c in store_module._WHITESPACE] + [" \u3000\n\t"]
    kept = ["\x00", "\ufeff", "\u200b", "\u3000a\u3000", " x ", "\u2028.\u2029"]
    proposals = blank + kept
    lee = Actor("lee", "lee", "lead")
    with Store(tmp_path / "c.duckdb") as store:
        dataset_id = store.add_dataset(make_dataset(len(proposals)))
        run_id = store.create_run(dataset_id, "m", {})
        scores = [
            {"row_index": i, "confidence": 0.9, "correction_confidence": 0.9, "proposed_response": p}
            for i, p in enumerate(proposals)
        ]
        store.add_scores(run_id, scores)
        expected = [i for i, p in enumerate(proposals) if p.strip()]
        assert expected == list(range(len(blank), len(proposals)))
        everything = ReviewQuery(run_id, 0.5, 0.8, action="correct")
        assert store.review_count(everything, "accept") == len(kept)
        assert store.decide_duplicates(dataset_id, range(len(proposals)), "accept", run_id=run_id, actor=lee) == 6
        assert store.current_decisions(dataset_id)["row_index"].tolist() == expected
        assert store.accept_proposals(everything, actor=lee) == len(kept)
        assert store.current_decisions(dataset_id)["final_response"].tolist() == kept
