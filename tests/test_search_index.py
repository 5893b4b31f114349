"""The word index (``clear_core.search_index``) narrows a search to a superset of the rows that match, exactly the
matching rows for a query that is one word alone, and the store's search with the index gives what a plain scan
of every text gives (``ReviewQuery.search``: a case-insensitive substring under DuckDB's ``lower()``)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import numpy as np
import pytest

from clear_core import search_index
from clear_core.store import ReviewQuery, Store, StoreError
from tests.test_store import Dataset, Mapping, Row

# Letters in both cases, digits, separators, and characters whose lowercase is ASCII (İ -> i, Kelvin sign -> k)
# or longer than themselves, so words and their boundaries land in every case the index must handle.
ALPHABET = list("abcdeiksz") + list("ABEIKS") + list("0129") + list(" .,?'#-_\n\t") + list("İKäÄßéΣσ€😀")


def _lower(texts: list[str | None]) -> list[str | None]:
    """DuckDB's lower() of each text, the case folding ReviewQuery.search is defined by."""
    con = duckdb.connect()
    return [r[0] for r in con.execute("SELECT lower(t) FROM unnest($t) AS u(t)", {"t": texts}).fetchall()]


def _random_texts(rng: np.random.Generator, n: int, longest: int = 40) -> list[str]:
    texts = []
    for _ in range(n):
        text = "".join(rng.choice(ALPHABET, int(rng.integers(0, longest))))
        if rng.random() < 0.2:
            text += " " + "".join(rng.choice(list("abz09"), 15))  # a word longer than 12 bytes
        texts.append(text)
    return texts


def _random_queries(rng: np.random.Generator, texts: list[str], n: int) -> list[str]:
    """Pieces of the texts (so most queries match something) and random strings."""
    queries = []
    for _ in range(n):
        if rng.random() < 0.7:
            text = texts[int(rng.integers(len(texts)))]
            if not text:
                continue
            start = int(rng.integers(len(text)))
            queries.append(text[start : start + int(rng.integers(1, 8))])
        else:
            queries.append("".join(rng.choice(ALPHABET, int(rng.integers(1, 5)))))
    return queries


@pytest.mark.parametrize("share", [search_index.PAIR_SHARE, 0.0, 1.1])  # some words frequent, all, none
def test_candidates_hold_every_match_and_the_rows_known_to_match_do(share):
    rng = np.random.default_rng(11)
    prompts, responses = _random_texts(rng, 300), _random_texts(rng, 300)
    prompts[5] = None
    low_p, low_r = _lower(prompts), _lower(responses)
    index = search_index.build_from_texts(list(zip(low_p, low_r, strict=True)), share=share)
    queries = _random_queries(rng, prompts + responses, 400) + ["sss", "zzzzzzzzzzzzzzzzzz", "k", "i", "ß", "?"]
    queries += [a + sep + b for a, b in rng.choice(["a", "ab", "s", "0", "9k", "e"], (150, 2)) for sep in " ,."]
    whole, known_pairs = 0, 0
    for query, lowered in zip(queries, _lower(queries), strict=True):
        truth = [i for i, (p, r) in enumerate(zip(low_p, low_r)) if lowered in (p or "") or lowered in r]
        narrowed = index.candidates(lowered)
        if narrowed is None:
            assert not any(c.isascii() and c.isalnum() for c in lowered), query
            continue
        rows, known = narrowed
        assert set(truth) <= set(rows.tolist()), query
        assert set(rows[known].tolist()) <= set(truth), query
        whole += bool(known.all()) and len(rows) > 0
        separators = search_index._separators(lowered)
        if len(separators) == 3 and [len(s) for s in separators] == [0, 1, 0]:  # two words one byte apart
            assert known.all() or share > 0, query  # every word frequent: every pair indexed
            known_pairs += bool(known.any())
    assert whole > 100
    assert (known_pairs > 30) if share < 1 else known_pairs == 0


def test_two_frequent_words_one_byte_apart_are_known_from_their_pair():
    texts = [
        ("how many apples of the tree",),  # 0
        ("the tree of the king",),  # 1
        ("proof the x",),  # 2: 'proof' is rare (one row), so row 2 is a candidate to check, not known
        ("of-the of  the",),  # 3: a '-' between, and two spaces: neither is "of the"
        ("$12 and 12.5",),  # 4
        ("the of",),  # 5: the words in the other order (as in row 3)
    ]
    index = search_index.build_from_texts(texts, share=0.3)  # frequent: held by 2 rows or more
    rows, known = index.candidates("of the")
    assert rows.tolist() == [0, 1, 2] and known.tolist() == [True, True, False]
    assert index.candidates("f th")[0].tolist() == [0, 1, 2]  # a suffix and a prefix: the same pairs
    rows, known = index.candidates("of-the")
    assert rows.tolist() == [3] and known.all()
    rows, known = index.candidates("the of")
    assert rows.tolist() == [3, 5] and known.all()
    rows, known = index.candidates("$12")
    assert rows.tolist() == [4] and known.all()  # one word beside one indexed byte
    rows, known = index.candidates("12.5")
    assert rows.tolist() == [4] and not known.any()  # 12 and 5 are rare: no pair
    rows, known = index.candidates(" of the")
    assert not known.any()  # a third part: each pair found, the whole checked
    rows, known = index.candidates("of  the")  # two bytes apart: no pair to read, the words' rows checked
    assert rows.tolist() == [0, 1, 2, 3, 5] and not known.any()
    assert index.pair_rows_of(np.array([], dtype=np.int64), ord(" "), np.array([1]))[0].sum() == 0


def test_edges_only_narrow_the_words_candidates(monkeypatch):
    """The rows of a run's edges are some of the rows of its words, never a match fewer."""
    rng = np.random.default_rng(12)
    texts = _lower(_random_texts(rng, 400))
    index = search_index.build_from_texts([(t,) for t in texts])
    queries = _lower([q for q in _random_queries(rng, texts, 500) if any(c in q for c in "'#.,?-_\n\té€")])
    with_edges = [index.candidates(q) for q in queries]
    monkeypatch.setattr(search_index, "_EDGE", np.zeros(256, dtype=bool))  # words only, as before edges
    narrower = 0
    for query, narrowed in zip(queries, with_edges, strict=True):
        words = index.candidates(query)
        if narrowed is None:
            assert words is None, query
            continue
        truth = {i for i, t in enumerate(texts) if query in t}
        assert truth <= set(narrowed[0].tolist()) <= set(words[0].tolist()), query
        assert set(narrowed[0][narrowed[1]].tolist()) <= truth, query
        narrower += len(narrowed[0]) < len(words[0])
    assert narrower > 50


def test_a_word_does_not_run_across_rows_and_long_words_are_whole():
    texts = [("abc", "x"), ("def", "y"), ("thisisalongword1234", None), ("isalong", "")]
    index = search_index.build_from_texts(texts, row_index=[4, 5, 9, 10])
    assert index.candidates("cd")[0].tolist() == []
    assert index.candidates("cde")[0].tolist() == []
    assert index.candidates("abc")[0].tolist() == [4]
    assert index.candidates("isalong")[0].tolist() == [9, 10]
    assert index.candidates("longword12")[0].tolist() == [9]
    assert index.candidates("word1234 ")[0].tolist() == [9]  # a suffix: a separator after it
    assert index.candidates(" isalong")[0].tolist() == [10]  # a prefix: a separator before it
    assert index.candidates(" isalong ")[0].tolist() == [10]  # a whole word
    assert index.candidates("?!") is None


def test_query_runs_say_which_side_of_a_word_is_fixed_and_by_which_byte():
    assert search_index.query_runs("how many apples") == [
        (b"how", None, ord(" ")),
        (b"many", ord(" "), ord(" ")),
        (b"apples", ord(" "), None),
    ]
    assert search_index.query_runs("(#12") == [(b"12", ord("#"), None)]
    assert search_index.query_runs("it's") == [(b"it", None, ord("'")), (b"s", ord("'"), None)]
    assert search_index.query_runs("zebra") == [(b"zebra", None, None)]
    assert search_index.query_runs("é") == []
    assert search_index.query_runs("é1") == [(b"1", 0xA9, None)]  # the last byte of é's UTF-8


def test_a_run_beside_punctuation_reads_the_rows_where_its_word_has_that_neighbour():
    texts = [
        ("see (#12)", None),  # 0: '#' before 12
        ("12 apples #9", "it's"),  # 1: 12 at the start, '#' before 9
        ("a #120 b", "bit's"),  # 2: '#' before 120, "bit" before "'"
        ("# 12", "it s, it’s"),  # 3: a space between; it’s with U+2019, not "'"
        ("x\n12", "sit'\nsun"),  # 4: a newline before 12; "'" after sit, newline before sun
        ("abcdefghijklmnop#12 #abcdefghijklmnopq", "'s"),  # 5: long words' edges
    ]
    index = search_index.build_from_texts(texts)
    assert index.candidates("(#12")[0].tolist() == [0, 2, 5]
    assert index.candidates("#12")[0].tolist() == [0, 2, 5]
    assert index.candidates("#9")[0].tolist() == [1]
    assert index.candidates("it's")[0].tolist() == [1, 2]
    assert index.candidates("it’s")[0].tolist() == [3]
    assert index.candidates("\n12")[0].tolist() == [4]
    assert index.candidates("it'\ns")[0].tolist() == [4]
    assert index.candidates("mnop#")[0].tolist() == [5]
    assert index.candidates("#abcdefghijklmnopq")[0].tolist() == [5]
    assert index.candidates("'s")[0].tolist() == [1, 2, 5]
    assert index.candidates("12 ")[0].tolist() == [
        0,
        1,
        3,
        4,
        5,
    ]  # a space is not an indexed edge: every row of a word ending in 12


@pytest.fixture
def random_store(tmp_path):
    rng = np.random.default_rng(3)
    n = 400
    prompts, responses, proposals = _random_texts(rng, n), _random_texts(rng, n), _random_texts(rng, n)
    rows = [
        Row(i, {"i": i}, [{"role": "user", "content": p}], p, r) for i, (p, r) in enumerate(zip(prompts, responses))
    ]
    ds = Dataset("r.jsonl", "/r.jsonl", "jsonl", "alpaca", Mapping(), rows, columns=["i"], content_hash="r")
    with Store(tmp_path / "r.duckdb") as store:
        dataset_id = store.add_dataset(ds)
        run_id = store.create_run(dataset_id, "m", {})
        store.add_scores(
            run_id,
            [
                {"row_index": i, "confidence": 0.5, "proposed_response": None if i % 9 == 0 else proposals[i]}
                for i in range(n)
            ],
        )
        yield store, run_id, _random_queries(rng, prompts + responses + proposals, 150)


def _scanned(store: Store, run_id: int, search: str) -> list[int]:
    """The plain definition: every text lowered and searched."""
    with store._cursor() as cursor:
        sql = """
            SELECT s.row_index FROM scores s JOIN rows r ON r.row_index = s.row_index
            WHERE s.run_id = $run AND r.dataset_id = (SELECT dataset_id FROM runs WHERE run_id = $run)
              AND (contains(lower(r.prompt), lower($q)) OR contains(lower(r.response), lower($q))
                   OR coalesce(contains(lower(s.proposed_response), lower($q)), FALSE))
            ORDER BY 1"""
        return [r[0] for r in cursor.execute(sql, {"run": run_id, "q": search}).fetchall()]


# The index's candidates looked up by key (in IN lists of 7 keys, so that most take several), checked in one scan,
# or every text read.
@pytest.mark.parametrize(("by_key", "share"), [(4096, 1.0), (0, 1.0), (0, 0.0)])
def test_store_search_with_the_index_equals_the_scan(random_store, monkeypatch, by_key, share):
    store, run_id, queries = random_store
    store.prepare_search(run_id)
    assert len(store.__dict__["_word_indexes"]) == 2
    monkeypatch.setattr("clear_core.store._CHECK_SHARE", share)
    monkeypatch.setattr("clear_core.store._CHECK_BY_KEY", by_key)
    monkeypatch.setattr("clear_core.store._INDEX_SCAN_KEYS", 7)
    monkeypatch.setattr("clear_core.store._ROWS_PER_KEY", 1)
    for search in [*queries, "ISTANBUL", "K", "100%", "a b", "'", "it's", "iii", "İİ", "\\E"]:
        store.__dict__.pop("_search_cache", None)
        expected = _scanned(store, run_id, search)
        assert store._search_rows(run_id, store._dataset_of_run(run_id), search).tolist() == expected, search
        assert store.review_count(ReviewQuery(run_id, 0.5, 0.8, search=search)) == len(expected), search


def test_a_search_before_the_index_is_built_scans_and_new_scores_are_not_read_from_an_old_index(random_store):
    store, run_id, _ = random_store
    dataset_id = store._dataset_of_run(run_id)
    assert store._search_rows(run_id, dataset_id, "zz").tolist() == _scanned(store, run_id, "zz")
    store.prepare_search(run_id)
    store.add_scores(run_id, [{"row_index": 1, "confidence": 0.5, "proposed_response": "a ZEBRA-crossing"}])
    store.__dict__.pop("_search_cache", None)
    assert 1 in store._search_rows(run_id, dataset_id, "zebra-cross").tolist()
    assert store._search_rows(run_id, dataset_id, "zebra").tolist() == _scanned(store, run_id, "zebra")


def test_warm_search_builds_the_indexes_in_the_background_only_for_a_large_dataset(random_store, monkeypatch):
    store, run_id, queries = random_store
    store.warm_search(run_id)  # 400 rows: below _WARM_SEARCH_ROWS, nothing starts
    assert "_index_thread" not in store.__dict__ and not store.__dict__.get("_word_indexes")

    monkeypatch.setattr("clear_core.store._WARM_SEARCH_ROWS", 100)
    store.set_run_status(run_id, "running")
    store.warm_search(run_id)
    store.__dict__["_index_thread"].join(timeout=60)
    assert [key[0] for key in store.__dict__["_word_indexes"]] == ["rows"]  # proposals change while it scores

    store.set_run_status(run_id, "done")
    store.warm_search(run_id)
    store.__dict__["_index_thread"].join(timeout=60)
    assert sorted(key[0] for key in store.__dict__["_word_indexes"]) == ["proposals", "rows"]
    thread = store.__dict__["_index_thread"]
    store.warm_search(run_id)  # both built: no new thread
    assert store.__dict__["_index_thread"] is thread
    for search in queries[:20]:
        assert store._search_rows(run_id, store._dataset_of_run(run_id), search).tolist() == _scanned(
            store, run_id, search
        )


def test_closing_the_store_stops_an_index_built_in_the_background(random_store, monkeypatch):
    """DuckDB refuses to close a connection a cursor is reading: close() stops the build at its next batch."""
    store, run_id, _ = random_store
    reading, text_batches = threading.Event(), store._text_batches

    def slowly(cursor, sql, params):
        reader, batches = text_batches(cursor, sql, params)

        def one_by_one():
            for batch in batches:
                reading.set()
                time.sleep(0.3)
                yield batch

        return reader, one_by_one()

    monkeypatch.setattr(store, "_text_batches", slowly)
    monkeypatch.setattr("clear_core.store._INDEX_BATCH_ROWS", 50)  # 400 rows: 8 batches
    store._search_rows(run_id, store._dataset_of_run(run_id), "zz")  # no index yet: scans, and starts one
    assert reading.wait(timeout=30)
    thread = store.__dict__["_index_thread"]
    store.close()
    assert not thread.is_alive()
    assert not store.__dict__.get("_word_indexes")  # stopped, not finished


_EXIT_WHILE_BUILDING = """
import sys, time
from clear_core import store as s

s._INDEX_BATCH_ROWS = 20
text_batches = s.Store._text_batches

def slowly(self, cursor, sql, params):
    reader, batches = text_batches(self, cursor, sql, params)
    return reader, (time.sleep(0.2) or batch for batch in batches)

s.Store._text_batches = slowly
store = s.Store(sys.argv[1])
store._search_rows(1, store._dataset_of_run(1), "zz")  # starts the build in the background
time.sleep(1)
assert store._index_building()
"""


def test_a_process_that_exits_during_a_build_stops_it_and_exits_cleanly(random_store, tmp_path):
    """Python aborts its exit when a daemon thread is inside C code streaming to the child: it is stopped first."""
    store, _, _ = random_store
    store.close()
    root = str(Path(search_index.__file__).resolve().parent.parent)
    done = subprocess.run(
        [sys.executable, "-c", _EXIT_WHILE_BUILDING, str(tmp_path / "r.duckdb")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": root},
    )
    assert done.returncode == 0, done.stderr
    assert "Fatal Python error" not in done.stderr
    assert not [p.name for p in (tmp_path / ".search").glob("*") if "spool" in p.name or "tmp" in p.name]


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="thread priorities are a POSIX call")
def test_an_index_built_in_the_background_gives_way_to_the_page_and_leaves_its_priority(random_store, monkeypatch):
    store, run_id, _ = random_store
    seen = []
    monkeypatch.setattr(store, "prepare_search", lambda *_: seen.append(_niceness()))
    monkeypatch.setattr("clear_core.store._WARM_SEARCH_ROWS", 100)
    before = _niceness()
    store.warm_search(run_id)
    store.__dict__["_index_thread"].join(timeout=60)
    assert seen == [19]  # the build thread runs last in line for a core
    assert _niceness() == before  # only that thread: the server's own threads keep theirs


def _niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_word_indexes_are_built_by_a_child_saved_beside_the_database_and_read_by_the_next_store(
    random_store, tmp_path, monkeypatch
):
    store, run_id, queries = random_store
    dataset_id = store._dataset_of_run(run_id)
    monkeypatch.setattr(search_index, "build", None)  # built here, it would fail: the child process builds it
    store.prepare_search(run_id)
    proposals, rows = sorted((tmp_path / ".search").iterdir())
    assert proposals.name.startswith(f"r.duckdb-proposals-{run_id}-")
    assert rows.name.startswith(f"r.duckdb-rows-{dataset_id}-")
    assert all(f.name.endswith(f"-v{search_index.FORMAT}") for f in (rows, proposals))
    assert all(isinstance(index.rows, np.memmap) for index in store.__dict__["_word_indexes"].values())
    store.add_scores(run_id, [{"row_index": 1, "confidence": 0.5, "proposed_response": "new"}])
    store.prepare_search(run_id)  # new scores: a new proposals index, and the older one removed
    assert len(list((tmp_path / ".search").glob(f"r.duckdb-proposals-{run_id}-*"))) == 1
    assert proposals not in set((tmp_path / ".search").iterdir())
    store.close()
    monkeypatch.undo()
    with Store(tmp_path / "r.duckdb") as again:  # a new server: both indexes read, not built
        again.prepare_search(run_id)
        assert "_index_thread" not in again.__dict__
        assert all(isinstance(index.rows, np.memmap) for index in again.__dict__["_word_indexes"].values())
        for search in queries[:30]:
            assert again._search_rows(run_id, dataset_id, search).tolist() == _scanned(again, run_id, search)
        again.delete_dataset(dataset_id)
        assert not list((tmp_path / ".search").iterdir())


def test_a_failing_index_build_says_why_and_a_read_only_store_builds_in_memory(random_store, tmp_path, monkeypatch):
    store, run_id, queries = random_store
    (tmp_path / "python").write_text("#!/bin/sh\necho 'index builder: out of memory' >&2\nexit 3\n")
    (tmp_path / "python").chmod(0o755)
    monkeypatch.setattr("clear_core.store.sys.executable", str(tmp_path / "python"))
    with pytest.raises(StoreError, match="exit code 3.*out of memory"):
        store.prepare_search(run_id)
    assert not (tmp_path / ".search").exists() or not list((tmp_path / ".search").iterdir())
    store.close()
    with Store(tmp_path / "r.duckdb", read_only=True) as reader:  # may not write: builds here, saves nothing
        reader.prepare_search(run_id)
        assert not (tmp_path / ".search").exists() or not list((tmp_path / ".search").iterdir())
        for search in queries[:20]:
            assert reader._search_rows(run_id, reader._dataset_of_run(run_id), search).tolist() == _scanned(
                reader, run_id, search
            )


def test_an_index_saved_without_edges_or_pairs_is_not_read(tmp_path):
    """A folder of an older layout (no edge or pair arrays) reads as no index, so the index is built again."""
    index = search_index.build_from_texts([("a b",), ("c#d",), ("a b",)], share=0.5)
    index.save(tmp_path / "saved")
    loaded = search_index.WordIndex.load(tmp_path / "saved")
    assert loaded.candidates("c#")[0].tolist() == [1]
    rows, known = loaded.candidates("a b")
    assert rows.tolist() == [0, 2] and known.all()
    for array in ("pair_keys", "edge_keys"):
        (tmp_path / "saved" / f"{array}.npy").unlink()
        assert search_index.WordIndex.load(tmp_path / "saved") is None


def test_a_saved_index_is_not_read_for_other_text(tmp_path):
    """Another file at the same path, with the same dataset id, has other text: its index folder differs."""
    folders = []
    for text in ("alpha beta", "gamma delta"):
        (tmp_path / "s.duckdb").unlink(missing_ok=True)
        rows = [Row(0, {"i": 0}, [{"role": "user", "content": text}], text, text)]
        ds = Dataset("s.jsonl", "/s.jsonl", "jsonl", "alpaca", Mapping(), rows, columns=["i"], content_hash="same")
        with Store(tmp_path / "s.duckdb") as store:
            folders.append(store._index_folder(store.add_dataset(ds)))
    assert folders[0] != folders[1]
