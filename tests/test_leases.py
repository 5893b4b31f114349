"""Many annotators at once (issue 9), at the store: leases hand out rows nobody else holds, they expire and end on a
decision, overlap keeps a row in others' queues until N people decided it, and concurrent decisions are never lost.
Real DuckDB files; the clock is injected (``now=``) where expiry matters."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from pathlib import Path

import pandas as pd
import pytest

from clear_core.permissions import Actor, NotAllowed, local_actor
from clear_core.store import DEFAULT_LEASE_SECONDS, ReviewQuery, Store
from clear_core.ui_state import ago, decided_before, free_position
from tests.test_store import make_dataset, score

ANN = Actor("u-ann", "ann", "annotator")
BOB = Actor("u-bob", "bob", "annotator")
CY = Actor("u-cy", "cy", "annotator")
LEE = Actor("u-lee", "lee", "lead")
T0 = dt.datetime(2026, 1, 1, 12, 0, 0)


@pytest.fixture
def team(tmp_path: Path):
    """A 10-row dataset scored so that the queue (least confident first) is rows 0, 1, 2, ... 9."""
    with Store(tmp_path / "team.duckdb") as store:
        dataset_id = store.add_dataset(make_dataset(10))
        run_id = store.create_run(dataset_id, "m", {})
        store.add_scores(run_id, [score(i, 0.05 + i / 10) for i in range(10)])
        yield store, dataset_id, ReviewQuery(run_id, 0.5, 0.99)


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def test_two_people_get_different_rows_and_see_who_holds_what(team):
    store, dataset_id, query = team
    assert store.claim_next(query, actor=ANN, now=at(0)) == 0
    assert store.claim_next(query, actor=BOB, now=at(0)) == 1  # row 0 is ann's
    assert store.claim_next(query, actor=CY, now=at(0)) == 2
    leases = store.active_leases(dataset_id, now=at(1))
    assert leases[["row_index", "actor_name"]].values.tolist() == [[0, "ann"], [1, "bob"], [2, "cy"]]
    assert (leases["expires_at"] == at(0) + dt.timedelta(seconds=DEFAULT_LEASE_SECONDS)).all()
    # Each person skips the rows the others hold; opening someone else's row says who has it open.
    assert store.busy_rows(dataset_id, range(10), actor=BOB, now=at(1)) == {0: ["ann"], 2: ["cy"]}
    opened = store.claim(dataset_id, 0, actor=BOB, now=at(1))
    assert opened["granted"] is False and opened["others"] == ["ann"]
    # Opening another row gives back the one held before (one open row per person): bob's row 1 is free again.
    assert store.claim_next(query, actor=CY, now=at(2)) == 1


def test_a_lease_expires_and_its_row_goes_to_the_next_person(team):
    store, dataset_id, query = team
    store.set_review_settings(dataset_id, lease_seconds=300, actor=LEE)
    assert store.claim_next(query, actor=ANN, now=at(0)) == 0
    assert store.claim_next(query, actor=BOB, now=at(4)) == 1  # ann's lease still runs
    assert store.claim_next(query, actor=CY, now=at(5.5)) == 0  # ... and ended at 5 min: ann left row 0
    assert store.active_leases(dataset_id, now=at(5.5))["actor_name"].tolist() == ["bob", "cy"]
    assert store.active_leases(dataset_id, now=at(10))["actor_name"].tolist() == ["cy"]  # until 10.5 min
    assert store.active_leases(dataset_id, now=at(11)).empty


def test_a_decision_ends_the_lease_and_skip_releases_it(team):
    store, dataset_id, query = team
    assert store.claim_next(query, actor=ANN) == 0
    store.record_decision(dataset_id, 0, "remove", actor=ANN)
    assert store.active_leases(dataset_id).empty  # deciding needs no release
    assert store.claim_next(query, actor=BOB) == 1  # row 0 is decided: out of everyone's queue (overlap 1)
    assert store.release(dataset_id, actor=BOB, row_index=1) == 1  # skip
    assert store.claim_next(query, actor=ANN) == 1
    assert store.release(dataset_id, actor=ANN) == 1 and store.active_leases(dataset_id).empty  # leaving


def test_undoing_a_decision_puts_the_row_back_in_the_queue(team):
    store, dataset_id, query = team
    store.record_decision(dataset_id, 0, "remove", actor=ANN)
    assert store.claim_next(query, actor=BOB) == 1
    store.undo_last_decision(dataset_id, ANN)
    assert store.claim_next(query, actor=ANN) == 0


def test_a_lead_undoes_anyones_decision_an_annotator_only_their_own(team):
    store, dataset_id, query = team
    ann_0 = store.record_decision(dataset_id, 0, "remove", reason="wrong", actor=ANN)
    bob_0 = store.record_decision(dataset_id, 0, "reject", actor=BOB)  # the latest: row 0's current decision
    with pytest.raises(NotAllowed, match="ann \\(annotator\\) may not undo other people's decisions"):
        store.undo_decision(bob_0, actor=ANN)
    assert len(store.decision_log(dataset_id)) == 2  # nothing written
    undone = store.undo_decision(bob_0, actor=LEE)  # not the latest of lee's (lee has none): a specific one
    assert (undone["decision_id"], undone["annotator"], undone["decision"]) == (bob_0, "bob", "reject")
    log = store.decision_log(dataset_id)
    assert log[["annotator", "decision", "undoes"]].values.tolist()[-1] == ["lee", "undo", bob_0]
    current = store.current_decisions(dataset_id).set_index("row_index")
    assert current.loc[0, "annotator"] == "ann"  # the row falls back to the decision it had before
    assert store.row_decisions(dataset_id, 0)["annotator"].tolist() == ["ann"]
    assert store.undo_decision(ann_0, actor=ANN)["decision_id"] == ann_0  # one's own: an annotator's right
    assert store.current_decisions(dataset_id).empty
    with pytest.raises(Exception, match="was undone already"):
        store.undo_decision(bob_0, actor=LEE)
    with pytest.raises(Exception, match="is itself an undo"):
        store.undo_decision(int(store.decision_log(dataset_id)["decision_id"].iloc[-1]), actor=LEE)
    with pytest.raises(Exception, match="There is no decision 999"):
        store.undo_decision(999, actor=LEE)
    group_id, _ = store.decide_query(dataclasses.replace(query, max_confidence=0.2), "remove", actor=LEE)
    in_group = int(store.decision_log(dataset_id)["decision_id"].iloc[-1])
    with pytest.raises(Exception, match=f"made for a whole query \\(group {group_id}\\); undo the group"):
        store.undo_decision(in_group, actor=LEE)
    assert len(store.decision_log(dataset_id)) == 6  # 2 decisions, 2 undos, the group's 2 rows: no refusal wrote


def test_a_blind_reviewers_filters_read_only_their_own_decisions(team):
    """With decided_by, status, reason and the decision sort read that person's decisions: ann cannot find the rows
    bob removed by asking for removed rows (blind review under overlap)."""
    store, dataset_id, query = team
    store.set_review_settings(dataset_id, overlap=2, actor=LEE)
    for row in (1, 2):
        store.record_decision(dataset_id, row, "remove", reason="wrong", actor=BOB)
    store.record_decision(dataset_id, 3, "reject", actor=ANN)
    store.record_decision(dataset_id, 3, "remove", reason="wrong", actor=BOB)  # the row's current decision: bob's

    def rows(**fields) -> list[int]:
        page, total = store.review_queue(dataclasses.replace(query, **fields))
        assert total == len(page)
        return page["row_index"].tolist()

    assert rows(status="remove") == [1, 2, 3] and rows(reason="wrong") == [1, 2, 3]  # everyone's, as a lead sees
    assert rows(status="remove", decided_by="ann") == [] and rows(reason="wrong", decided_by="ann") == []
    assert rows(status="decided", decided_by="ann") == [3] and rows(status="reject", decided_by="ann") == [3]
    assert rows(status="decided", decided_by="bob") == [1, 2, 3]
    mine = store.review_queue(dataclasses.replace(query, decided_by="ann"))[0].set_index("row_index")
    assert mine.loc[3, "decision"] == "reject" and mine.loc[3, "annotator"] == "ann"  # hers, not bob's later one
    assert mine.loc[[1, 2], "decision"].isna().all()  # bob's decisions on the rows she has not decided: nothing
    latest = store.review_queue(dataclasses.replace(query, decided_by="ann", order_by="decided_at", ascending=False))
    assert latest[0]["row_index"].tolist()[:3] == [3, 0, 1]  # only her decision orders; the rest by row
    assert store.review_count(dataclasses.replace(query, status="remove", decided_by="ann")) == 0


def test_overlap_keeps_a_row_in_other_queues_until_n_people_decided_it(team):
    store, dataset_id, query = team
    with pytest.raises(NotAllowed, match="ann \\(annotator\\) may not change how many people review each row"):
        store.set_review_settings(dataset_id, overlap=2, actor=ANN)
    store.set_review_settings(dataset_id, overlap=2, actor=LEE)
    assert (
        store.review_settings(dataset_id)["overlap"] == 2 and store.review_settings(dataset_id)["updated_by"] == "lee"
    )
    # Two people may hold a row at once; a third gets the next one.
    assert store.claim_next(query, actor=ANN) == 0
    assert store.claim_next(query, actor=BOB) == 0
    assert store.claim_next(query, actor=CY) == 1
    store.record_decision(dataset_id, 0, "remove", actor=ANN)
    assert store.claim_next(query, actor=ANN) == 1  # ann decided row 0: never again for her; cy alone holds row 1
    store.record_decision(dataset_id, 1, "reject", actor=CY)
    assert store.claim_next(query, actor=CY) == 2  # row 0: ann decided, bob holds it; row 1: cy decided it
    store.record_decision(dataset_id, 0, "reject", actor=BOB)  # the second person: row 0 is done
    assert (
        store.rows_decided_by(dataset_id, "ann", range(10)) == {0}
        and store.rows_decided_by(dataset_id, "dee", [0]) == set()
    )
    assert store.claim_next(query, actor=BOB) == 2  # row 1: cy decided, ann holds it; cy alone holds row 2
    assert store.claim_next(query, actor=Actor("u-dee", "dee", "annotator")) == 3  # 1 and 2 are full
    # The queue with a reviewer lists what is still to do for that person: not decided by them, fewer than 2 people.
    to_do = {
        who: store.review_queue(dataclasses.replace(query, reviewer=who, overlap=2))[1]
        for who in ("ann", "bob", "cy", "dee")
    }
    assert to_do == {"ann": 9, "bob": 9, "cy": 8, "dee": 9}
    # Both decisions on row 0 stand in the log; the latest (bob's) is the row's current decision.
    assert store.row_decisions(dataset_id, 0)[["annotator", "decision"]].values.tolist() == [
        ["ann", "remove"],
        ["bob", "reject"],
    ]
    current = store.current_decisions(dataset_id).set_index("row_index")
    assert current.loc[0, "annotator"] == "bob" and current.loc[0, "decision"] == "reject"


def test_bad_settings_are_refused(team):
    store, dataset_id, _ = team
    for bad in ({"overlap": 0}, {"overlap": 11}, {"overlap": 1.5}, {"lease_seconds": 5}):
        with pytest.raises(Exception, match="must be a whole number"):
            store.set_review_settings(dataset_id, **bad, actor=LEE)
    with pytest.raises(Exception, match="Enter your name"):
        store.claim(dataset_id, 0, actor=local_actor(""))


def test_local_mode_one_person_sees_no_leases_two_names_get_different_rows(team):
    store, dataset_id, query = team
    me = local_actor("alice")
    assert store.claim_next(query, actor=me) == 0
    assert store.claim(dataset_id, 0, actor=local_actor("alice")) == {
        "row_index": 0,
        "granted": True,
        "others": [],
        "expires_at": store.active_leases(dataset_id)["expires_at"][0],
    }  # a second tab of the same person: their own row
    assert store.busy_rows(dataset_id, range(10), actor=me) == {}
    assert store.claim_next(query, actor=local_actor("bert")) == 1


def test_two_people_deciding_one_row_at_once_both_stay_in_the_log(team):
    store, dataset_id, _ = team
    store.record_decision(dataset_id, 4, "remove", actor=ANN)  # both had row 4 open; ann clicked first
    store.record_decision(dataset_id, 4, "reject", actor=BOB)
    log = store.decision_log(dataset_id)
    assert log[["annotator", "decision"]].values.tolist() == [["ann", "remove"], ["bob", "reject"]]
    now = pd.Timestamp(log["decided_at"].max()) + pd.Timedelta(minutes=2)
    assert decided_before(store.row_decisions(dataset_id, 4), "bob", now) == [
        "Decided before you by ann (Removed), 2 min ago"
    ]
    assert decided_before(store.row_decisions(dataset_id, 4), "ann", now) == []  # nobody decided before ann


def run_threads(target, n: int) -> list[BaseException]:
    errors: list[BaseException] = []

    def guarded(i: int) -> None:
        try:
            target(i)
        except BaseException as exc:  # noqa: BLE001 - surfaced by the caller's assert
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


@pytest.mark.parametrize("connections", ["one store", "a store per thread"])
def test_concurrent_decisions_on_the_same_rows_are_never_lost(team, tmp_path, connections):
    store, dataset_id, _ = team
    people = [Actor(f"u{i}", f"p{i}", "annotator") for i in range(6)]
    decisions = ("remove", "reject", "remove", "reject", "remove", "reject")

    def decide(i: int) -> None:
        own = store if connections == "one store" else Store(tmp_path / "team.duckdb")
        try:
            for row in range(10):  # everyone decides every row: 6 people race on each
                own.record_decision(dataset_id, row, decisions[i], actor=people[i])
        finally:
            if own is not store:
                own.close()

    assert run_threads(decide, len(people)) == []
    log = store.decision_log(dataset_id)
    assert len(log) == 60 and log["decision_id"].is_unique
    assert sorted(log.groupby("annotator").size().tolist()) == [10] * 6
    # The latest decision of each row is its current one; everyone's decision stays on record for agreement.
    latest = log.sort_values("decision_id").groupby("row_index").tail(1).set_index("row_index")["annotator"]
    current = store.current_decisions(dataset_id).set_index("row_index")["annotator"]
    assert current.sort_index().tolist() == latest.sort_index().tolist()
    assert len(store.annotator_decisions(dataset_id)) == 60


@pytest.mark.parametrize("connections", ["one store", "a store per thread"])
def test_concurrent_claims_hand_out_each_row_once(team, tmp_path, connections):
    store, dataset_id, query = team
    people = [Actor(f"u{i}", f"p{i}", "annotator") for i in range(8)]
    got: dict[str, list[int]] = {p.name: [] for p in people}

    def work(i: int) -> None:
        own = store if connections == "one store" else Store(tmp_path / "team.duckdb")
        try:
            for _ in range(3):
                row = own.claim_next(query, actor=people[i])
                if row is None:
                    return
                got[people[i].name].append(row)
                own.record_decision(dataset_id, row, "reject", actor=people[i])
        finally:
            if own is not store:
                own.close()

    assert run_threads(work, len(people)) == []
    handed = [row for rows in got.values() for row in rows]
    assert sorted(handed) == list(range(10))  # every row once: nobody reviewed a row by accident twice
    assert len(store.decision_log(dataset_id)) == 10


def test_free_position_skips_rows_others_hold():
    rows = [10, 11, 12, 13]
    assert free_position(rows, 0, {10, 11}) == 2
    assert free_position(rows, 2, {12, 13}, delta=1) == 1  # nothing free below: the nearest free one above
    assert free_position(rows, 3, {13, 12}, delta=-1) == 1
    assert free_position(rows, -1, set()) == 3
    assert free_position(rows, 1, set(rows)) == 1  # all open elsewhere: stay
    assert free_position([], 0, set()) == 0


def test_ago_reads_like_a_person():
    assert [ago(s) for s in (5, 61, 150, 7300, 90000, 200000)] == [
        "just now",
        "1 min ago",
        "2 min ago",
        "2 h ago",
        "1 day ago",
        "2 days ago",
    ]
