"""The queue and Thresholds data built for a million rows give the same answers as the plain definitions.

The Review queue sorts keys first and reads the text of one page by key (``Store.review_queue``); the Thresholds
page counts from a pre-binned grid (``Store.threshold_grid``, ``clear_core.histograms``) and a stratified sample
(``Store.threshold_sample``). Each is checked here against a reference computed in pandas from every row, on a
small real database; bench/queue_speed.py measures their speed at 10k-1M rows.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from clear_core import clear, histograms
from clear_core.errors import InvalidInput
from clear_core.permissions import Actor
from clear_core.store import ReviewQuery, Store
from tests.test_store import Dataset, Mapping, Row

N = 240
LEAD = Actor("lee", "lee", "lead")
WORDS = ("apples", "Zebra crossing", "ÄRGER über", "100% sure", "tab\there", "İstanbul", "C:\\Ende", "nothing")


@pytest.fixture(scope="module")
def queue_db(tmp_path_factory):
    """Read-only for the tests that use it: N rows with ties, NULLs and values exactly on the sliders' 0.01
    thresholds, failed rows, proposals with searchable text, and decisions of every kind (one undone)."""
    rng = np.random.default_rng(7)
    rows = []
    for i in range(N):
        prompt = f"Question {i}: {WORDS[i % len(WORDS)]}?"
        response = "x" * int(rng.integers(1, 60)) + (" ZEBRA" if i % 17 == 0 else "")
        rows.append(Row(i, {"i": i}, [{"role": "user", "content": prompt}], prompt, response))
    ds = Dataset("q.jsonl", "/q.jsonl", "jsonl", "alpaca", Mapping(), rows, columns=["i"], content_hash="q")
    store = Store(tmp_path_factory.mktemp("queue") / "q.duckdb")
    dataset_id = store.add_dataset(ds)
    run_id = store.create_run(dataset_id, "m", {})
    grid_values = np.round(rng.integers(0, 101, N) / 100, 2)  # exactly k/100: on a slider's threshold
    records = []
    for i in range(N):
        if i % 23 == 5:
            records.append({"row_index": i, "error": "RuntimeError: boom"})
            continue
        confidence = None if i % 31 == 7 else float(grid_values[i] if i % 2 else rng.random())
        correction = None if i % 13 == 3 else float(grid_values[(i * 5) % N] if i % 3 else rng.random())
        records.append(
            {
                "row_index": i,
                "confidence": confidence,
                "correction_confidence": correction,
                "logprob_mean": float(-rng.random()),
                "n_response_tokens": int(i % 7),  # many ties
                "proposed_response": None if i % 11 == 4 else f"Proposal {i}: {WORDS[(i * 3) % len(WORDS)]}",
            }
        )
    store.add_scores(run_id, records)
    kinds = ("accept", "reject", "remove", "edit")
    for k, i in enumerate(range(0, N, 9)):
        if i % 23 == 5 or i % 11 == 4:
            continue
        kind = kinds[k % 4]
        extra = {"reason": ("wrong", "format")[k % 2]} if kind in ("reject", "remove") else {}
        if kind == "edit":
            extra = {"final_response": f"Edited {i}"}
        store.record_decision(dataset_id, i, kind, run_id=run_id, actor=LEAD, **extra)
    store.undo_last_decision(dataset_id, LEAD)
    yield store, dataset_id, run_id
    store.close()


def reference(store: Store, dataset_id: int, run_id: int, gamma: float, eta: float) -> pd.DataFrame:
    """Every scored row with text, scores, action and current decision, from the store's plain readers."""
    scores = store.scores(run_id)
    rows = store.dataset_rows(dataset_id)[["row_index", "prompt", "response", "prompt_messages"]]
    current = store.current_decisions(dataset_id)[["row_index", "decision", "final_response", "decided_at", "reason"]]
    frame = scores.merge(rows, on="row_index").merge(current, on="row_index", how="left")
    actions = clear.decide_many(frame["confidence"], frame["correction_confidence"], gamma, eta)
    frame["action"] = np.where(frame["error"].isna(), actions, None)
    frame["response_length"] = frame["response"].str.len()
    return frame


def select(frame: pd.DataFrame, query: ReviewQuery) -> list[int]:
    """The row indices ``query`` selects, in its order, by its definition (ReviewQuery's docstring)."""
    keep = frame["error"].notna() if query.status == "failed" else frame["error"].isna()
    if query.action is not None:
        keep &= frame["action"].isin(query.action)
    if query.status == "undecided":
        keep &= frame["decision"].isna()
    elif query.status == "decided":
        keep &= frame["decision"].notna()
    elif query.status not in (None, "failed"):
        keep &= frame["decision"] == query.status
    if query.min_confidence is not None:
        keep &= frame["confidence"] >= query.min_confidence
    if query.max_confidence is not None:
        keep &= frame["confidence"] <= query.max_confidence
    if query.search:
        needle = query.search.lower()
        columns = ("prompt", "response", "proposed_response")
        keep &= np.logical_or.reduce(
            [frame[c].fillna("").str.lower().str.contains(needle, regex=False) for c in columns]
        )
    if query.reason is not None:
        keep &= frame["reason"] == query.reason
    picked = frame[keep]
    by = picked[query.order_by]
    nulls = picked[by.isna()].sort_values("row_index")
    present = picked[by.notna()].assign(_key=by[by.notna()])
    present = present.sort_values(["_key", "row_index"], ascending=[query.ascending, True], kind="stable")
    return present["row_index"].tolist() + nulls["row_index"].tolist()


QUERIES = [
    {},
    {"ascending": False},
    {"action": "filter"},
    {"action": ("correct", "keep"), "order_by": "correction_confidence", "ascending": False},
    {"status": "undecided"},
    {"status": "decided", "order_by": "decided_at", "ascending": False},
    {"status": "edit"},
    {"status": "failed", "order_by": "row_index"},
    {"min_confidence": 0.3, "max_confidence": 0.6},
    {"search": "zebra"},
    {"search": "ärger"},
    {"search": "100%"},
    {"search": "ISTANBUL"},  # lower('İ') is 'i', which RE2's case folding alone would miss
    {"search": ":\\end"},  # a backslash then e: no way out of the pattern's quoting
    {"search": "i"},
    {"search": "proposal 1", "status": "undecided"},
    {"reason": "wrong"},
    {"order_by": "response_length"},
    {"order_by": "n_response_tokens", "ascending": False},
    {"order_by": "action"},
    {"order_by": "decision"},
]


@pytest.mark.parametrize("fields", QUERIES, ids=[",".join(f"{k}={v}" for k, v in q.items()) or "all" for q in QUERIES])
def test_every_page_of_the_queue_is_the_reference_order(queue_db, fields):
    store, dataset_id, run_id = queue_db
    query = ReviewQuery(run_id, 0.5, 0.7, **fields)
    expected = select(reference(store, dataset_id, run_id, 0.5, 0.7), query)
    pages = [store.review_queue(query, limit=40, offset=offset) for offset in range(0, len(expected) + 40, 40)]
    assert [i for page, _ in pages for i in page["row_index"].tolist()] == expected
    assert {total for _, total in pages} == {len(expected)} == {store.review_count(query)}


def test_a_page_carries_every_column_of_its_rows(queue_db):
    store, dataset_id, run_id = queue_db
    page, _ = store.review_queue(ReviewQuery(run_id, 0.5, 0.7, status="decided"), limit=40)
    assert list(page.columns[:4]) == ["row_index", "prompt", "response", "prompt_messages"]
    assert list(page.columns[-9:]) == [
        "action",
        "response_length",
        "decision",
        "final_response",
        "decision_id",
        "annotator",
        "decided_at",
        "reason",
        "note",
    ]
    frame = reference(store, dataset_id, run_id, 0.5, 0.7).set_index("row_index")
    columns = ["prompt", "response", "prompt_messages", "proposed_response", "confidence", "action", "decision"]
    columns += ["final_response", "reason", "response_length"]
    for row in page.itertuples(index=False):
        want = frame.loc[row.row_index]
        for column in columns:
            got, expected = getattr(row, column), want[column]
            assert got == expected or (pd.isna(got) and pd.isna(expected)), (row.row_index, column, got, expected)
    assert store.review_queue(ReviewQuery(run_id, 0.5, 0.7, search="no such text"))[0].empty


def test_migration_12_indexes_row_index_for_page_lookups(queue_db):
    store, _, _ = queue_db
    with store._cursor() as cursor:
        names = {name for (name,) in cursor.execute("SELECT index_name FROM duckdb_indexes()").fetchall()}
    assert {"rows_row_index", "scores_row_index"} <= names


THRESHOLDS = [0.0, 0.07, 0.29, 0.57, 0.7, 1.0]  # 0.07, 0.29 and 0.57: 100·x is not k in floating point


def test_the_grid_counts_what_the_sql_counts_at_every_slider_position(queue_db):
    store, _, run_id = queue_db
    grid = store.threshold_grid(run_id)
    assert list(grid.columns) == list(histograms.GRID_COLUMNS)
    assert grid["n"].sum() == store.scored_count(run_id)
    for gamma in THRESHOLDS:
        for eta in THRESHOLDS:
            assert histograms.counts_at(grid, gamma, eta) == store.action_counts(run_id, gamma, eta), (gamma, eta)
            actions = histograms.cell_actions(grid, gamma, eta)
            mine = histograms.agreement(grid, actions)
            sql = store.agreement_by_bucket(run_id, gamma, eta, bins=histograms.AGREEMENT_BUCKETS)
            columns = ["bucket", "lower", "upper", "n_rows", "n_decided", "n_agree"]
            assert mine[columns].values.tolist() == sql[columns].values.tolist()
            assert np.allclose(mine["agreement"], sql["agreement"], equal_nan=True)
    assert histograms.counts_at(grid, 0.555, 0.7) is None and histograms.on_grid(0.1 + 0.2) is None


def test_the_grid_is_its_scores_part_with_the_decided_rows_moved(queue_db, tmp_path):
    """The Thresholds page keeps the grid of the scores alone and re-counts only the decided rows after a decision:
    put together, the same frame as the grid of every row with its decision (every kind, one undone; none)."""
    store, _, run_id = queue_db
    scores, decided = store.threshold_grid(run_id, "scores"), store.threshold_grid(run_id, "decided")
    assert scores["decision"].isna().all() and decided["decision"].notna().all()
    assert decided["n"].sum() == store.review_progress(run_id)[0] and scores["n"].sum() == store.scored_count(run_id)
    pd.testing.assert_frame_equal(histograms.with_decisions(scores, decided), store.threshold_grid(run_id))
    with Store(tmp_path / "none.duckdb") as fresh:  # no decision at all: the decided part is empty
        rows = [Row(i, {"i": i}, [{"role": "user", "content": f"q{i}"}], f"q{i}", f"r{i}") for i in range(3)]
        ds = Dataset("n.jsonl", "/n.jsonl", "jsonl", "alpaca", Mapping(), rows, columns=["i"], content_hash="n")
        fresh_run = fresh.create_run(fresh.add_dataset(ds), "m", {})
        fresh.add_scores(fresh_run, [{"row_index": i, "confidence": i / 3} for i in range(3)])
        parts = fresh.threshold_grid(fresh_run, "scores"), fresh.threshold_grid(fresh_run, "decided")
        assert parts[1].empty
        pd.testing.assert_frame_equal(histograms.with_decisions(*parts), fresh.threshold_grid(fresh_run))
    with pytest.raises(InvalidInput, match="expected 'all', 'scores' or 'decided'"):
        store.threshold_grid(run_id, "some")


def test_histogram_bars_hold_each_value_in_its_bar(queue_db):
    store, dataset_id, run_id = queue_db
    grid = store.threshold_grid(run_id)
    actions = histograms.cell_actions(grid, 0.5, 0.7)
    frame = reference(store, dataset_id, run_id, 0.5, 0.7)
    frame = frame[frame["error"].isna()]
    for column, bar in (("confidence", "conf_bin"), ("correction_confidence", "corr_bin")):
        bars = histograms.histogram(grid, actions, bar)
        assert len(bars) == len(clear.ACTIONS) * histograms.BINS
        values = frame[frame[column].notna()]
        index = np.minimum(np.floor(values[column] * histograms.BINS), histograms.BINS - 1).astype(int)
        expected = values.assign(bar=index).groupby(["action", "bar"]).size()
        got = bars.assign(bar=(bars["left"] * histograms.BINS).round().astype(int)).set_index(["action", "bar"])["n"]
        assert got[got > 0].to_dict() == expected.to_dict()


def test_the_scatter_sample_keeps_rare_rows_and_stays_small(queue_db):
    store, dataset_id, run_id = queue_db
    every = store.threshold_sample(run_id, size=10_000)  # more than the rows: all of them, weight 1
    scored = reference(store, dataset_id, run_id, 0.5, 0.7)
    placed = scored[scored["error"].isna() & scored["confidence"].notna()]
    assert sorted(every["row_index"]) == sorted(placed["row_index"]) and set(every["weight"]) == {1.0}
    placed = placed.sort_values("row_index")
    assert every["response_length"].tolist() == placed["response_length"].tolist()
    assert every["decision"].fillna("").tolist() == placed["decision"].fillna("").tolist()
    assert every["logprob_mean"].tolist() == placed["logprob_mean"].tolist()

    small = store.threshold_sample(run_id, size=20, floor=3)
    decided = placed[placed["decision"].notna()]
    assert len(small) < len(placed)
    # every (decile, decided) stratum keeps at least 3 rows, or all it has; the weights add up to the rows
    deciles = np.clip(np.floor(placed["confidence"] * 10), 0, 9)
    strata = placed.assign(decile=deciles, decided=placed["decision"].notna()).groupby(["decile", "decided"]).size()
    picked = placed.set_index("row_index").loc[small["row_index"]]
    got = picked.assign(decile=np.clip(np.floor(picked["confidence"] * 10), 0, 9), decided=picked["decision"].notna())
    got = got.groupby(["decile", "decided"]).size()
    for stratum, size in strata.items():
        assert got.get(stratum, 0) >= min(size, 3), stratum
    assert math.isclose(small["weight"].sum(), len(placed), rel_tol=0.2)
    assert set(decided["row_index"]) & set(small["row_index"])  # decided rows are there although rare
    assert small.equals(store.threshold_sample(run_id, size=20, floor=3))  # stable across redraws


def test_a_search_is_found_again_after_new_scores_change_a_proposal(tmp_path):
    rows = [Row(i, {"i": i}, [{"role": "user", "content": f"q{i}"}], f"q{i}", f"a{i}") for i in range(6)]
    store = Store(tmp_path / "s.duckdb")
    dataset_id = store.add_dataset(Dataset("s", "/s", "jsonl", "alpaca", Mapping(), rows, content_hash="s"))
    run_id = store.create_run(dataset_id, "m", {})
    store.add_scores(run_id, [{"row_index": i, "confidence": i / 10, "proposed_response": f"p{i}"} for i in range(6)])
    query = ReviewQuery(run_id, 0.5, 0.7, search="Walrus")
    assert store.review_count(query) == 0 and store.review_queue(query)[1] == 0  # kept for the next redraw
    store.add_scores(run_id, [{"row_index": 4, "confidence": 0.4, "proposed_response": "A walrus."}])
    assert store.review_queue(query)[0]["row_index"].tolist() == [4]
    store.record_decision(dataset_id, 4, "remove", actor=LEAD)
    assert store.review_count(dataclasses.replace(query, status="undecided")) == 0
    assert store.review_count(dataclasses.replace(query, status="remove")) == 1
    store.close()


# Queries whose pages _queue_keys assembles from a kept sorted order and the decisions of the moment.
KEPT_ORDER_QUERIES = [
    {},
    {"status": "undecided"},
    {"status": "decided", "order_by": "decided_at", "ascending": False},
    {"status": "remove"},
    {"reason": "wrong", "order_by": "decision"},
    {"order_by": "decision", "ascending": False},
    {"action": "correct", "status": "undecided"},
    {"order_by": "action", "ascending": False},
    {"order_by": "response_length", "ascending": False},
    {"order_by": "response_length", "status": "decided"},
    {"search": "walrus"},
    {"search": "walrus", "status": "undecided", "order_by": "correction_confidence"},
    {"status": "failed", "order_by": "decided_at"},
    {"reviewer": "ann", "overlap": 2},
    {"decided_by": "ann", "status": "decided"},
    {"decided_by": "bob", "order_by": "decision"},
]


def sql_order(store: Store, query: ReviewQuery) -> list[int]:
    """The rows ``query`` selects in its order, by the plain SQL definition (``_review_select``, which counts and
    query-wide actions use), read afresh."""
    select, params = store._review_select(query, "*")
    with store._cursor() as cursor:
        found = cursor.execute(f"SELECT row_index FROM ({select}) ORDER BY {query.order()}", params).fetchall()
    return [i for (i,) in found]


def test_pages_from_kept_orders_stay_exact_after_decisions_thresholds_scores_and_calibration(tmp_path):
    """One store, its kept orders and searches warm, checked page by page against the SQL after each change."""
    from clear_core.calibration import Calibration

    rng = np.random.default_rng(3)
    n = 90
    rows = [
        Row(i, {"i": i}, [{"role": "user", "content": f"q{i}"}], f"q{i} {WORDS[i % 8]}", "y" * (i * 7 % 23))
        for i in range(n)
    ]
    store = Store(tmp_path / "k.duckdb")
    dataset_id = store.add_dataset(Dataset("k", "/k", "jsonl", "alpaca", Mapping(), rows, content_hash="k"))
    run_id = store.create_run(dataset_id, "m", {})
    store.add_scores(
        run_id,
        [
            {"row_index": i, "error": "RuntimeError: boom"}
            if i % 19 == 4
            else {
                "row_index": i,
                "raw_logit": float(rng.normal()),
                "judge_prob": float(rng.random()),
                "confidence": float(np.round(rng.random(), 2)),
                "correction_confidence": float(np.round(rng.random(), 2)),
                "proposed_response": "A Walrus." if i % 10 == 0 else f"p{i}",
            }
            for i in range(n)
        ],
    )
    ann, bob = Actor("ann", "ann", "annotator"), Actor("bob", "bob", "annotator")

    def check(step: str) -> None:
        for fields in KEPT_ORDER_QUERIES:
            reads_action = "action" in fields or fields.get("order_by") == "action"
            for gamma, eta in ((0.5, 0.7), (0.3, 0.4)) if reads_action else ((0.5, 0.7),):  # the kept order's key
                query = ReviewQuery(run_id, gamma, eta, **fields)
                expected = sql_order(store, query)
                pages = [store.review_queue(query, limit=25, offset=o) for o in range(0, len(expected) + 25, 25)]
                got = [i for page, _ in pages for i in page["row_index"].tolist()]
                assert got == expected, (step, gamma, eta, fields)
                assert {total for _, total in pages} == {len(expected)}, (step, fields)

    check("scored")
    for i, kind in zip(range(0, n, 4), ("accept", "remove", "reject", "edit") * 10, strict=False):
        if kind == "accept" and i % 19 == 4:  # a failed row has no proposal to accept
            kind = "remove"
        extra = {"reason": "wrong"} if kind in ("remove", "reject") else {}
        extra = {"final_response": "Edited."} if kind == "edit" else extra
        store.record_decision(dataset_id, i, kind, run_id=run_id, actor=ann, **extra)
    for i in range(0, n, 6):  # bob decides some of ann's rows too: with overlap, both decisions stand
        store.record_decision(dataset_id, i, "remove", run_id=run_id, actor=bob, reason="format")
    check("decided")
    store.undo_last_decision(dataset_id, bob)
    store.undo_last_decision(dataset_id, ann)
    check("undone")
    group, _ = store.decide_query(ReviewQuery(run_id, 0.5, 0.7, max_confidence=0.2), "remove", actor=LEAD)
    check("decided for a query")
    store.undo_group(group, actor=LEAD)
    check("query's decisions undone")
    store.add_scores(run_id, [{"row_index": 5, "confidence": 0.01, "proposed_response": "Walrus again"}])
    store.add_scores(run_id, [{"row_index": 4, "confidence": 0.99, "raw_logit": 1.0}])  # a failed row scored
    check("new scores")
    store.save_calibration(run_id, Calibration(2.0, -1.0, "synthetic"))
    check("recalibrated")
    store.close()


def scored_store(path, n: int, seed: int = 3) -> tuple[Store, int, int]:
    """``n`` rows scored with uniform confidences, a few NaN and failed ones: the scatter's candidates are a strict
    subset of each decile when ``n`` is large against the sample."""
    rng = np.random.default_rng(seed)
    rows = [Row(i, {"i": i}, [{"role": "user", "content": f"q{i}"}], f"q{i}", "r" * (i % 50 + 1)) for i in range(n)]
    store = Store(path)
    dataset_id = store.add_dataset(Dataset("c", "/c", "jsonl", "alpaca", Mapping(), rows, content_hash="c"))
    run_id = store.create_run(dataset_id, "m", {})
    records = [
        {"row_index": i, "error": "RuntimeError: boom"}
        if i % 97 == 5
        else {
            "row_index": i,
            "confidence": float("nan") if i % 89 == 3 else float(rng.random()),
            "correction_confidence": float(rng.random()),
            "logprob_mean": float(-rng.random()),
            "n_response_tokens": int(i % 7),
        }
        for i in range(n)
    ]
    store.add_scores(run_id, records)
    return store, dataset_id, run_id


def test_the_scatter_sample_from_kept_candidates_is_the_scans_sample(queue_db, tmp_path, monkeypatch):
    """``threshold_sample`` picks undecided rows from ``threshold_summary``'s candidates and decided rows from the
    decisions: the same frame as scanning every score, with few decisions (no scan) and with a decile's candidates
    nearly all decided (the scan again)."""
    store, _, run_id = queue_db
    for size, floor in ((20, 3), (50, 5), (10_000, 60)):
        pd.testing.assert_frame_equal(
            store.threshold_sample(run_id, size, floor), store._threshold_sample_scan(run_id, size, floor)
        )
    big, dataset_id, big_run = scored_store(tmp_path / "c.duckdb", 3_000)
    with big:
        candidates = big.threshold_summary(big_run, 100, 5)["candidates"]
        deciles = candidates.groupby("decile").size()
        assert (deciles < 300).all() and len(candidates) < 1_000  # a subset of every decile
        for i in range(0, 3_000, 41):  # a few decisions, some among the candidates
            big.record_decision(dataset_id, i, ("remove", "reject")[i % 2], actor=LEAD)
        scan = big._threshold_sample_scan(big_run, 100, 5)
        with monkeypatch.context() as patched:
            patched.setattr(Store, "_threshold_sample_scan", lambda *args: pytest.fail("scanned the scores"))
            pd.testing.assert_frame_equal(big.threshold_sample(big_run, 100, 5), scan)
        for i in candidates.loc[candidates["decile"] == 4, "row_index"].iloc[5:]:  # leaves 5 undecided, quota ~ 10
            big.record_decision(dataset_id, int(i), "remove", actor=LEAD)
        scans = []
        scan = Store._threshold_sample_scan
        with monkeypatch.context() as patched:
            patched.setattr(Store, "_threshold_sample_scan", lambda *args: scans.append(args) or scan(*args))
            pd.testing.assert_frame_equal(big.threshold_sample(big_run, 100, 5), scan(big, big_run, 100, 5))
        assert len(scans) == 1  # decile 4 ran short of undecided candidates: the scores were read again


def test_the_thresholds_summary_is_kept_per_scores_version_across_processes(tmp_path, monkeypatch):
    """A run marked done has its summary saved; a fresh Store reads it without reading the scores; new scores make
    it stale and it is computed again; a read-only Store computes without saving; deleting the dataset removes it."""
    store, dataset_id, run_id = scored_store(tmp_path / "k.duckdb", 400)
    store.set_run_status(run_id, "running")
    with store._cursor() as cursor:
        assert cursor.execute("SELECT count(*) FROM score_summaries").fetchone()[0] == 0
    store.set_run_status(run_id, "done")
    with store._cursor() as cursor:
        names = sorted(name for (name,) in cursor.execute("SELECT name FROM score_summaries").fetchall())
    assert names == ["bins", "candidates", "grid"]
    first = store.threshold_summary(run_id)
    pd.testing.assert_frame_equal(first["grid"], store.threshold_grid(run_id, "scores"))
    pd.testing.assert_frame_equal(first["bins"], store.confidence_bins(run_id, histograms.BUDGET_BINS))
    store.close()
    with monkeypatch.context() as patched:  # a fresh process: the saved frames, the scores unread
        patched.setattr(Store, "_summarize", lambda *args: pytest.fail("computed the summary again"))
        with Store(tmp_path / "k.duckdb") as fresh:
            again = fresh.threshold_summary(run_id)
            for name in ("grid", "bins", "candidates"):
                pd.testing.assert_frame_equal(again[name], first[name])
            pd.testing.assert_frame_equal(fresh.threshold_sample(run_id), fresh._threshold_sample_scan(run_id))
    with Store(tmp_path / "k.duckdb") as store:
        store.add_scores(run_id, [{"row_index": 7, "confidence": 0.999, "correction_confidence": 0.5}])
        grid = store.threshold_summary(run_id)["grid"]
        pd.testing.assert_frame_equal(grid, store.threshold_grid(run_id, "scores"))
        assert not grid.equals(first["grid"])
        store.add_scores(run_id, [{"row_index": 9, "confidence": 0.001}])
    with Store(tmp_path / "k.duckdb", read_only=True) as reader:
        pd.testing.assert_frame_equal(reader.threshold_summary(run_id)["grid"], reader.threshold_grid(run_id, "scores"))
    with Store(tmp_path / "k.duckdb") as store:
        with store._cursor() as cursor:  # the read-only store saved nothing: still the version before row 9
            saved = cursor.execute("SELECT DISTINCT version FROM score_summaries").fetchall()
        store.threshold_summary(run_id)  # this one saves the version with row 9
        with store._cursor() as cursor:
            assert cursor.execute("SELECT DISTINCT version FROM score_summaries").fetchall() not in ([], saved)
        store.delete_dataset(dataset_id)
        with store._cursor() as cursor:
            assert cursor.execute("SELECT count(*) FROM score_summaries").fetchone()[0] == 0


def test_the_decided_rows_read_once_give_the_grid_labels_and_sample_of_their_own_reads(tmp_path, monkeypatch):
    """``threshold_decided``: one join of the scores with the decisions gives what ``threshold_grid(run, 'decided')``,
    ``reviewed_labels`` and the scatter sample (as a scan of every score picks it) give, with no decision yet and
    then with decisions on failed rows, NaN and NULL confidences and rows with and without a raw logit, one undone."""
    store, dataset_id, run_id = scored_store(tmp_path / "d.duckdb", 1_500)
    with store:
        for size, floor in ((100, 5), (10_000, 60)):
            parts = store.threshold_decided(run_id, size, floor)
            assert parts["grid"].empty and [len(a) for a in parts["reviewed"]] == [0, 0]
            pd.testing.assert_frame_equal(parts["sample"], store._threshold_sample_scan(run_id, size, floor))
        store.add_scores(run_id, [{"row_index": i, "confidence": 0.1 * (i % 9), "raw_logit": i / 50} for i in (6, 8)])
        store.add_scores(run_id, [{"row_index": 10, "confidence": None, "correction_confidence": 0.9}])
        for i in (3, 5, 6, 8, 10, 11, 92, 102, 400, 401, 877):  # 5, 102: failed; 3, 92: NaN; 10: NULL
            extra = {"final_response": f"Edited {i}"} if i % 3 == 1 else {}
            store.record_decision(dataset_id, i, ("remove", "edit", "reject")[i % 3], actor=LEAD, **extra)
        store.undo_last_decision(dataset_id, LEAD)
        version = store.threshold_version(run_id)
        for size, floor in ((100, 5), (10_000, 60)):
            for scores_version in (None, version[:-1]):
                parts = store.threshold_decided(run_id, size, floor, scores_version=scores_version)
                pd.testing.assert_frame_equal(parts["grid"], store.threshold_grid(run_id, "decided"))
                assert parts["grid"]["n"].sum() == 8  # 11 decided, one undone, two failed
                logits, bad = store.reviewed_labels(run_id)
                assert sorted(zip(*parts["reviewed"])) == sorted(zip(logits, bad)) and len(logits) == 2
                pd.testing.assert_frame_equal(parts["sample"], store._threshold_sample_scan(run_id, size, floor))
        with monkeypatch.context() as patched:  # the caller's scores version: the scores are not read for it
            patched.setattr("clear_core.store._scores_version", lambda *args: pytest.fail("read the version"))
            store.threshold_decided(run_id, 100, 5, scores_version=version[:-1])
