"""Duplicate groups in the store (migration 9) on real DuckDB files: found after import or on first use, listed
for a row with confidence and decision, and one decision applied to a row's duplicates in one transaction."""

from __future__ import annotations

import pytest

from clear_core.errors import InvalidInput
from clear_core.migrations import MIGRATIONS
from clear_core.permissions import NotAllowed
from clear_core.store import NotFoundError, Store
from tests.test_store import annotator, lead, make_dataset, make_row, score

LONG = (
    "Natalia sold 48 clips in April and half as many in May, so she sold 48 / 2 = 24 clips in May and "
    "48 + 24 = 72 clips in April and May together. The answer is 72."
)


def duplicated_dataset():
    """10 rows: responses of 1, 4 and 8 are near-duplicates (4 one word off, 8 the same but for case), and
    rows 2 and 6 ask the same question."""
    ds = make_dataset(10, content_hash="dups")
    ds.rows[1] = make_row(1, LONG)
    ds.rows[4] = make_row(4, LONG.replace("together", "combined"))
    ds.rows[8] = make_row(8, LONG.upper())
    for i in (2, 6):
        ds.rows[i].prompt = "What is the capital of France? Answer in one word."
    return ds


@pytest.fixture
def dups(tmp_path):
    with Store(tmp_path / "dups.duckdb") as store:
        dataset_id = store.add_dataset(duplicated_dataset())
        run_id = store.create_run(dataset_id, "tiny-model", {"k": 0})
        store.add_scores(run_id, [score(i, 0.1 * i, proposal="" if i == 8 else None) for i in range(10)])
        yield store, dataset_id, run_id


def test_groups_are_stored_per_kind_and_counted(dups):
    store, dataset_id, _ = dups
    summary = store.find_duplicates(dataset_id)
    assert summary == {"response_rows": 3, "response_groups": 1, "prompt_rows": 2, "prompt_groups": 1}
    with store._cursor() as cursor:
        stored = cursor.execute(
            "SELECT kind, row_index, group_id FROM duplicate_groups WHERE dataset_id = ? AND row_index <> group_id "
            "ORDER BY kind, row_index",
            [dataset_id],
        ).fetchall()
        n = cursor.execute("SELECT count(*) FROM duplicate_groups WHERE dataset_id = ?", [dataset_id]).fetchall()
    assert stored == [("prompt", 6, 2), ("response", 4, 1), ("response", 8, 1)]
    assert n[0][0] == 20  # every row of both kinds: "computed, no duplicates" is stored too
    assert store.find_duplicates(dataset_id) == summary  # recomputing replaces, never adds


def test_a_database_without_groups_computes_them_on_first_use(tmp_path):
    path = tmp_path / "old.duckdb"
    with Store(path) as store:
        dataset_id = store.add_dataset(duplicated_dataset())  # add_dataset alone stores no groups
        store._conn.execute("DELETE FROM duplicate_groups")
        assert store.duplicate_summary(dataset_id)["response_rows"] == 3
    with Store(path) as store:
        assert list(store.duplicates_of(dataset_id, 4)["row_index"]) == [1, 8]
    assert 9 in [v for v, _ in MIGRATIONS]


def test_duplicates_of_lists_the_others_with_confidence_and_decision(dups):
    store, dataset_id, run_id = dups
    store.record_decision(dataset_id, 8, "remove", actor=annotator("bo"))
    others = store.duplicates_of(dataset_id, 1, run_id=run_id)
    assert list(others["row_index"]) == [4, 8]
    assert list(others["confidence"].round(2)) == [0.4, 0.8]
    assert others["decision"].isna().tolist() == [True, False] and others["decision"].iloc[1] == "remove"
    assert list(store.duplicates_of(dataset_id, 6, kind="prompt")["row_index"]) == [2]
    assert store.duplicates_of(dataset_id, 0).empty
    with pytest.raises(InvalidInput, match="kind"):
        store.duplicates_of(dataset_id, 1, kind="record")


def test_row_duplicates_gives_each_kind_as_duplicates_of_does(dups):
    """Review reads both kinds for a row in one call: the same frames as one duplicates_of per kind."""
    store, dataset_id, run_id = dups
    store.record_decision(dataset_id, 8, "remove", actor=annotator("bo"))
    for row_index in range(10):
        both = store.row_duplicates(dataset_id, row_index, run_id=run_id)
        assert list(both) == ["response", "prompt"]
        for kind, frame in both.items():
            alone = store.duplicates_of(dataset_id, row_index, kind, run_id=run_id)
            assert frame.to_dict("records") == alone.to_dict("records"), (row_index, kind)
    both = store.row_duplicates(dataset_id, 2, run_id=run_id)
    assert both["response"].empty and list(both["prompt"]["row_index"]) == [6]
    assert list(store.row_duplicates(dataset_id, 1)["response"]["row_index"]) == [4, 8]


def test_apply_to_group_writes_one_decision_per_duplicate(dups):
    store, dataset_id, run_id = dups
    others = list(store.duplicates_of(dataset_id, 1)["row_index"])
    assert store.decide_duplicates(dataset_id, others, "remove", run_id=run_id, actor=annotator("ann")) == 2
    log = store.decision_log(dataset_id)
    assert list(log["row_index"]) == [4, 8] and set(log["decision"]) == {"remove"}
    assert set(log["annotator"]) == {"ann"} and log["final_response"].isna().all()
    # accept uses each row's own proposal and skips a row without one (row 8's is empty)
    assert store.decide_duplicates(dataset_id, others, "accept", run_id=run_id, actor=lead("lee")) == 1
    current = store.current_decisions(dataset_id).set_index("row_index")
    assert current.loc[4, "decision"] == "accept" and current.loc[4, "final_response"] == "Proposal 4"
    assert current.loc[8, "decision"] == "remove"


def test_apply_to_group_is_validated_and_all_or_nothing(dups):
    store, dataset_id, run_id = dups
    with pytest.raises(InvalidInput, match="Cannot apply 'edit'"):
        store.decide_duplicates(dataset_id, [4], "edit", actor=annotator("ann"))
    with pytest.raises(InvalidInput, match="annotator name"):
        store.decide_duplicates(dataset_id, [4], "remove", actor=annotator(""))
    with pytest.raises(InvalidInput, match="run_id"):
        store.decide_duplicates(dataset_id, [4], "accept", actor=annotator("ann"))
    with pytest.raises(NotFoundError, match=r"\[99\]"):
        store.decide_duplicates(dataset_id, [4, 99], "remove", actor=annotator("ann"))
    with pytest.raises(NotFoundError, match="run"):
        store.decide_duplicates(dataset_id, [4], "reject", run_id=run_id + 5, actor=annotator("ann"))
    assert store.decide_duplicates(dataset_id, [], "reject", actor=annotator("ann")) == 0
    assert store.decision_log(dataset_id).empty


def test_roles_that_may_not_decide_are_refused(dups, monkeypatch):
    from clear_core import permissions

    store, dataset_id, _ = dups
    monkeypatch.setitem(permissions.ACTIONS, "decide", permissions.Rule(frozenset({"lead"}), "record decisions"))
    with pytest.raises(NotAllowed):
        store.decide_duplicates(dataset_id, [4], "remove", actor=annotator("ann"))


def test_delete_dataset_drops_its_groups(dups):
    store, dataset_id, _ = dups
    store.find_duplicates(dataset_id)
    store.delete_dataset(dataset_id)
    with store._cursor() as cursor:
        assert cursor.execute("SELECT count(*) FROM duplicate_groups").fetchall()[0][0] == 0
