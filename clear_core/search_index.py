"""A word index over lowercased texts: which rows a case-insensitive substring search can match, without reading
every text (``Store._search_rows``).

A *word* is a maximal run of the bytes ``[a-z0-9]`` in a text's UTF-8 after DuckDB's ``lower()``; every other byte
(space, punctuation, any byte of a non-ASCII character) separates words. If ``lower(text)`` contains ``lower(query)``,
each maximal ``[a-z0-9]`` run of the query lies inside one word of the text, and where the query has a separator
beside a run, that side of the run is that side of the word: a run with separators on both sides is a whole word of
the text, one with a separator only after it (the query's first run) a word's suffix, one with a separator only
before it (the last run) a word's prefix, and a query that is one run alone is inside a word. So the rows holding
such words for every run are a superset of the rows that match, and for a query that is one run alone they are
exactly the rows that match (the word is part of the text). The store checks the other cases' candidates with the
exact test; a query without any ``[a-z0-9]`` byte cannot be narrowed (``WordIndex.candidates`` returns None).

Each word's *edges* are indexed too: the byte just before it and the byte just after it in its text (any byte but a
word byte or a space), each with the rows where the word has that neighbour. Where the query has a separator beside
a run, the text's word has that same byte on that side, so only the rows of (word, side, byte) can match: a run of
common words beside punctuation (``(#12``: a word starting with 12 just after a '#'; ``it's``: a word ending with
"it" before a "'", and one starting with "s" after it) is narrowed to the few rows that hold that neighbourhood.

Pairs of *frequent* words (held by at least ``PAIR_SHARE`` of the rows) that stand one byte apart are indexed too,
each (word, byte, word) with its rows (``with_pairs``, a second read of the texts). A query of two runs one byte
apart (``of the``, ``how many``: words so common that their own rows narrow nothing) reads the rows of its words'
pairs, and the rows of the rarer words on either side stay candidates. ``WordIndex.candidates`` also says which
candidates are known to match without the exact test: a query that is one run alone, one run with one indexed byte
on one side (``$12``), or two runs one byte apart found as a pair.

Words of up to 12 bytes are packed exactly into one integer (base 37: 37**12 < 2**63), so building needs no
dictionary of strings and no hash that could collide; longer words go through a Python dict. Pure numpy: no
database, testable on lists of strings (``build_from_texts``).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

__all__ = [
    "FORMAT",
    "PAIR_SHARE",
    "WordIndex",
    "batch_columns",
    "build",
    "build_from_texts",
    "query_runs",
    "with_pairs",
]

_ALPHABET = b"abcdefghijklmnopqrstuvwxyz0123456789"
_BASE = 37  # a word byte's code is 1-36, so a packed word never starts with a zero digit
_PACKED = 12  # the longest word packed into an int64: 37**12 < 2**63
_CODE = np.zeros(256, dtype=np.uint64)
_CODE[np.frombuffer(_ALPHABET, dtype=np.uint8)] = np.arange(1, _BASE, dtype=np.uint64)
_IS_WORD = _CODE > 0
_SEPARATOR = ord("\n")  # between the vocabulary's words (never a word byte)
# Bytes indexed as a word's edge: every separator but the space, which borders most words and so narrows little.
_EDGE = ~_IS_WORD
_EDGE[ord(" ")] = False
_OUTSIDE = _ALPHABET[0]  # a word's edge beyond its text's start or end: a word byte, so never indexed
_EDGE_SHIFT = 9  # an edge's key: word id << 9 | side << 8 | byte (side 0: the byte before the word, 1: after it)
# What WordIndex.save writes, one .npy file each. FORMAT names this layout in a saved index's folder name.
_ARRAYS = (
    *("vocabulary", "word_starts", "pointers", "rows", "edge_keys", "edge_pointers", "edge_rows"),
    *("pair_words", "pair_keys", "pair_pointers", "pair_rows"),
)
FORMAT = 3
# A word is *frequent* when at least this share of the rows hold it: only pairs of frequent words are indexed
# (``with_pairs``), as a query with a rarer word is narrowed enough by that word's rows alone.
PAIR_SHARE = 0.01


@dataclasses.dataclass(frozen=True)
class WordIndex:
    """The words of a set of texts and, for each word, the sorted row indices of the texts that hold it.

    vocabulary: every distinct word, each followed by a newline (``b"w1\\nw2\\n..."``), preceded by one newline.
    word_starts: where each word begins in ``vocabulary``. pointers: word i's rows are
    ``rows[pointers[i]:pointers[i + 1]]``. edge_keys: every (word, side, byte) found, as ``word << 9 | side << 8 |
    byte``, sorted; edge i's rows are ``edge_rows[edge_pointers[i]:edge_pointers[i + 1]]``. pair_words: the
    frequent words' ids, sorted (word ``pair_words[f]`` is frequent word f); pair_keys: every (f1, byte, f2) found,
    frequent word f1 then one separator byte then frequent word f2, as ``(f1 * 256 + byte) * len(pair_words) + f2``,
    sorted, with their rows in pair_pointers and pair_rows (none where ``with_pairs`` was not run). n_rows: one more
    than the largest row index indexed."""

    vocabulary: np.ndarray  # uint8
    word_starts: np.ndarray  # int64
    pointers: np.ndarray  # int64
    rows: np.ndarray  # uint32
    edge_keys: np.ndarray  # int64
    edge_pointers: np.ndarray  # int64
    edge_rows: np.ndarray  # uint32
    n_rows: int
    pair_words: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    pair_keys: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    pair_pointers: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(1, dtype=np.int64))
    pair_rows: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=np.uint32))

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in _ARRAYS)

    def save(self, folder: Path) -> None:
        """Write the index into ``folder`` as .npy files: made whole in a temporary folder beside it and renamed
        into place, so that a reader finds the whole index or none. An index already there is left as it is."""
        temporary = folder.with_name(f"{folder.name}.tmp-{os.getpid()}-{threading.get_ident()}")
        temporary.mkdir(parents=True)
        try:
            for name in _ARRAYS:
                np.save(temporary / f"{name}.npy", getattr(self, name))
            (temporary / "n_rows").write_text(str(self.n_rows))
            os.replace(temporary, folder)
        except OSError:
            if not folder.is_dir():
                raise
        finally:
            shutil.rmtree(temporary, ignore_errors=True)

    @classmethod
    def load(cls, folder: Path) -> WordIndex | None:
        """The index ``save`` wrote into ``folder``, its arrays mapped from the files (read as searches need
        them, shared with the page cache), or None when there is none."""
        try:
            arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in _ARRAYS}
            return cls(**arrays, n_rows=int((folder / "n_rows").read_text()))
        except (OSError, ValueError):
            return None

    def words_matching(self, run: bytes, at_start: bool, at_end: bool) -> np.ndarray:
        """Ids of the words that contain ``run`` (``[a-z0-9]`` bytes), starting with it if ``at_start``, ending
        with it if ``at_end``: a scan of the vocabulary (a few MB), byte by byte of the run."""
        pattern = (b"\n" if at_start else b"") + run + (b"\n" if at_end else b"")
        vocab = self.vocabulary
        first = np.flatnonzero(vocab[: len(vocab) - len(pattern) + 1] == pattern[0])
        for k in range(1, len(pattern)):
            first = first[vocab[first + k] == pattern[k]]
        if at_start:
            first = first + 1  # the match's word begins after its newline
        ids = np.searchsorted(self.word_starts, first, side="right") - 1  # ascending, as `first` is
        return ids[np.concatenate(([True], ids[1:] != ids[:-1]))] if len(ids) else ids

    def rows_of(self, words: np.ndarray) -> np.ndarray:
        """A boolean mask over row indices: the rows holding any of ``words``."""
        return _mask(self.pointers, self.rows, words, self.n_rows)

    def edge_rows_of(self, words: np.ndarray, side: int, byte: int) -> np.ndarray:
        """A boolean mask over row indices: the rows where one of ``words`` has ``byte`` just before it (side 0)
        or just after it (side 1)."""
        keys = np.asarray(words, dtype=np.int64) << _EDGE_SHIFT | side << 8 | byte
        at = np.minimum(np.searchsorted(self.edge_keys, keys), max(len(self.edge_keys) - 1, 0))
        found = at[self.edge_keys[at] == keys] if len(self.edge_keys) else at[:0]
        return _mask(self.edge_pointers, self.edge_rows, found, self.n_rows)

    def pair_rows_of(self, first: np.ndarray, byte: int, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Two boolean masks over row indices: the rows where one of the words ``first``, then ``byte``, then one
        of the words ``second`` stand together, of the frequent words alone (exact); and the rows holding any of the
        other, rarer words of either side (where such a pair may also stand, unindexed)."""
        n_frequent = len(self.pair_words)
        sides = []
        for words in (first, second):
            at = np.minimum(np.searchsorted(self.pair_words, words), max(n_frequent - 1, 0))
            frequent = self.pair_words[at] == words if n_frequent else np.zeros(len(words), dtype=bool)
            sides.append((at[frequent], words[~frequent]))
        (first_dense, first_rare), (second_dense, second_rare) = sides
        rare = self.rows_of(np.concatenate((first_rare, second_rare)))
        if not len(first_dense) or not len(second_dense):
            return np.zeros(self.n_rows, dtype=bool), rare
        # Each frequent first word's keys are one run of pair_keys; keep the keys whose second word is wanted.
        low = (first_dense.astype(np.int64) * 256 + byte) * n_frequent
        begin, end = np.searchsorted(self.pair_keys, low), np.searchsorted(self.pair_keys, low + n_frequent)
        lengths = end - begin
        at = np.repeat(begin - (np.cumsum(lengths) - lengths), lengths) + np.arange(int(lengths.sum()))
        wanted = np.zeros(n_frequent, dtype=bool)
        wanted[second_dense] = True
        found = at[wanted[np.asarray(self.pair_keys[at]) % n_frequent]]
        return _mask(self.pair_pointers, self.pair_rows, found, self.n_rows), rare

    def candidates(self, lowered_query: str) -> tuple[np.ndarray, np.ndarray] | None:
        """The sorted row indices whose texts may contain ``lowered_query`` (already DuckDB-``lower()``-ed), and
        a boolean mask over them: the rows known to contain it, which need no exact test. None when the query has
        no word byte to look up. A run with an indexed byte beside it reads the rows of that edge; two runs one
        byte apart read the rows of their words' pairs. Known: a query that is one run alone, one run with one
        indexed byte on one side, or two runs one byte apart found as a pair of frequent words."""
        runs = query_runs(lowered_query)
        if not runs:
            return None
        words = [self.words_matching(run, before is not None, after is not None) for run, before, after in runs]
        hit = None
        for (_, before, after), matching in zip(runs, words, strict=True):
            found = None
            for side, byte in ((0, before), (1, after)):
                if byte is not None and _EDGE[byte]:
                    edge = self.edge_rows_of(matching, side, byte)
                    found = edge if found is None else found & edge
            found = self.rows_of(matching) if found is None else found
            hit = found if hit is None else hit & found
            if not hit.any():
                return np.flatnonzero(hit), np.zeros(0, dtype=bool)
        separators = _separators(lowered_query)
        for k, gap in enumerate(separators[1:-1]):
            if len(gap) == 1:
                pairs, rare = self.pair_rows_of(words[k], gap[0], words[k + 1])
                hit &= pairs | rare
        rows = np.flatnonzero(hit)
        if len(runs) == 1:
            before, after = separators
            known = (not before or not after) and all(not b or (len(b) == 1 and _EDGE[b[0]]) for b in separators)
            return rows, np.full(len(rows), known, dtype=bool)
        if len(runs) == 2 and not separators[0] and not separators[2] and len(separators[1]) == 1:
            return rows, pairs[rows]
        return rows, np.zeros(len(rows), dtype=bool)


def _mask(pointers: np.ndarray, rows: np.ndarray, ids: np.ndarray, n_rows: int) -> np.ndarray:
    """A boolean mask over row indices: the rows of the postings ``ids`` (``rows[pointers[i]:pointers[i + 1]]``)."""
    hit = np.zeros(n_rows, dtype=bool)
    begin, end = pointers[ids], pointers[np.asarray(ids) + 1]
    lengths = end - begin
    total = int(lengths.sum())
    if total:
        shift = np.repeat(begin - (np.cumsum(lengths) - lengths), lengths)
        hit[rows[np.arange(total, dtype=np.int64) + shift]] = True
    return hit


def query_runs(lowered_query: str) -> list[tuple[bytes, int | None, int | None]]:
    """The query's maximal runs of word bytes, each with the separator byte just before it (so the text's word
    starts with the run, after that byte) and just after it (so the word ends with it, before that byte), or None
    where the run begins or ends the query."""
    data = np.frombuffer(lowered_query.encode("utf-8"), dtype=np.uint8)
    edges = _run_edges(data)
    return [
        (data[s:e].tobytes(), int(data[s - 1]) if s > 0 else None, int(data[e]) if e < len(data) else None)
        for s, e in zip(edges[::2], edges[1::2])
    ]


def _run_edges(data: np.ndarray) -> list[int]:
    """Where each maximal run of word bytes in ``data`` (uint8) starts and ends: [start, end, start, end, ...]."""
    word = _IS_WORD[data]
    return np.flatnonzero(np.diff(np.concatenate(([False], word, [False])).astype(np.int8))).tolist()


def _separators(lowered_query: str) -> list[bytes]:
    """The bytes around and between the query's runs of word bytes: before the first run, between each two, and
    after the last (one more than the runs; empty where nothing is)."""
    data = lowered_query.encode("utf-8")
    bounds = [0, *_run_edges(np.frombuffer(data, dtype=np.uint8)), len(data)]
    return [data[bounds[i] : bounds[i + 1]] for i in range(0, len(bounds), 2)]


class _Powers:
    """37**j and 37**-j mod 2**64 (numpy's uint64 arithmetic wraps; 37 is odd, so it has an inverse) for the
    positions j of a batch's bytes, grown as batches need."""

    def __init__(self) -> None:
        self.up = self.down = np.ones(0, dtype=np.uint64)

    def ensure(self, n: int) -> None:
        if len(self.up) >= n:
            return
        n = max(n + n // 2, 1 << 16)
        for name, factor in (("up", _BASE), ("down", pow(_BASE, -1, 2**64))):
            steps = np.full(n, factor, dtype=np.uint64)
            steps[0] = 1
            setattr(self, name, np.cumprod(steps))


@dataclasses.dataclass
class _Tokens:
    """The words of a string array: each word of up to 12 bytes as its packed key, the position in the array of
    its text, and its edges (the byte just before and just after it in that text, ``_OUTSIDE`` at the text's start
    or end); the longer words as bytes, with the same. Over all words in text order: whether each is short, and
    the byte between it and the next word where one byte alone separates them in the same text (else -1)."""

    keys: np.ndarray
    at: np.ndarray
    before: np.ndarray
    after: np.ndarray
    long_words: list[bytes]
    long_at: np.ndarray
    long_before: np.ndarray
    long_after: np.ndarray
    short: np.ndarray
    gap_after: np.ndarray


def _tokens(array: pa.Array, powers: _Powers) -> _Tokens:
    """The words of a string array (``_Tokens``)."""
    array = array.cast(pa.large_string())
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64, count=len(array) + 1, offset=array.offset * 8)
    values = array.buffers()[2]
    data = np.frombuffer(values, dtype=np.uint8) if values is not None else np.zeros(0, np.uint8)
    data = data[offsets[0] : offsets[-1]]
    offsets = offsets - offsets[0]
    n = len(data)
    if n == 0:
        empty, no_bytes = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint8)
        return _Tokens(
            empty.astype(np.uint64), empty, no_bytes, no_bytes, [], empty, no_bytes, no_bytes, empty.astype(bool), empty
        )
    edges = np.diff(_IS_WORD[data].view(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    del edges
    # A word that runs from one row's end into the next row's start is two words: cut it at the row boundary.
    inner = np.unique(offsets[1:-1])  # an empty text leaves the same offset twice: one cut, not an empty word
    inner = inner[(inner > 0) & (inner < n)]
    cut = inner[_IS_WORD[data[inner - 1]] & _IS_WORD[data[inner]]]
    if len(cut):
        starts = np.sort(np.concatenate((starts, cut)))
        ends = np.sort(np.concatenate((ends, cut)))
    positions = np.searchsorted(offsets, starts, side="right") - 1
    # The byte before each word and after it; where that is outside the word's text, a word byte (never an edge).
    text_edge = np.zeros(n + 1, dtype=bool)
    text_edge[offsets] = True
    before = data[np.maximum(starts - 1, 0)]
    before[text_edge[starts]] = _OUTSIDE
    after = data[np.minimum(ends, n - 1)]
    after[text_edge[ends]] = _OUTSIDE
    gap_after = np.full(len(starts), -1, dtype=np.int16)
    one_byte = (starts[1:] - ends[:-1] == 1) & (positions[1:] == positions[:-1])
    gap_after[:-1][one_byte] = data[ends[:-1][one_byte]]
    lengths = ends - starts
    short = lengths <= _PACKED
    # prefix[i] = sum of code[j] * 37**-j for j < i, so a word's value in base 37 (its codes, most significant
    # first) is 37**(end-1) * (prefix[end] - prefix[start]) mod 2**64: exact for words of up to 12 bytes.
    powers.ensure(n)
    prefix = np.zeros(n + 1, dtype=np.uint64)
    np.cumsum(_CODE[data] * powers.down[:n], out=prefix[1:])
    s, e = starts[short], ends[short]
    keys = (prefix[e] - prefix[s]) * powers.up[e - 1]
    del prefix
    long = ~short
    long_words = [data[a:b].tobytes() for a, b in zip(starts[long].tolist(), ends[long].tolist())]
    return _Tokens(
        keys,
        positions[short],
        before[short],
        after[short],
        long_words,
        positions[long],
        before[long],
        after[long],
        short,
        gap_after,
    )


def _edge_keys(words: np.ndarray, rows: np.ndarray, before: np.ndarray, after: np.ndarray):
    """The indexed edges of words at rows (``word << 9 | side << 8 | byte``, see ``_EDGE``), and their rows."""
    keys, at = [], []
    for side, byte in ((0, before), (1, after)):
        kept = np.flatnonzero(_EDGE[byte])
        keys.append(words[kept] << _EDGE_SHIFT | side << 8 | byte[kept].astype(np.int64))
        at.append(rows[kept])
    return np.concatenate(keys), np.concatenate(at)


def _distinct_pairs(codes: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The sorted distinct ``code << 32 | row`` of each (code, row)."""
    pairs = np.sort(codes.astype(np.int64) << 32 | rows)
    first = np.ones(len(pairs), dtype=bool)
    first[1:] = pairs[1:] != pairs[:-1]
    return pairs[first]


def _postings(groups: list[tuple[np.ndarray, np.ndarray]], n_ids: int) -> tuple[np.ndarray, np.ndarray]:
    """Pointers and rows (``WordIndex``) of ``n_ids`` ids from groups of (global id of each local code, distinct
    ``local code << 32 | row`` pairs), no (id, row) in two groups. The groups' pairs go into one array, each
    group's freed (popped) as it is copied, and are sorted in place: 8 bytes per posting while building."""
    allpairs = np.empty(sum(len(pairs) for _, pairs in groups), dtype=np.int64)
    at = 0
    while groups:
        to_id, pairs = groups.pop(0)
        np.bitwise_or(to_id[pairs >> 32].astype(np.int64) << 32, pairs & 0xFFFFFFFF, out=allpairs[at : at + len(pairs)])
        at += len(pairs)
    allpairs.sort()
    pointers = np.searchsorted(allpairs, np.arange(n_ids + 1, dtype=np.int64) << 32)
    low = 0 if np.little_endian else 1  # a pair's row is its low 32 bits
    rows = allpairs.view(np.uint32)[low::2].copy()
    return pointers, rows


def _keyed_postings(keys: list[np.ndarray], pairs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted distinct keys, pointers and rows (``WordIndex``) from groups of (each local code's key, distinct
    ``local code << 32 | row`` pairs); ``pairs`` is emptied as it is copied. One id per distinct key, in key order,
    so that a look-up is a binary search."""
    codes, distinct = pd.factorize(np.concatenate(keys) if keys else np.zeros(0, dtype=np.int64))
    distinct = np.asarray(distinct, dtype=np.int64)
    order = np.argsort(distinct)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    to_id = np.split(rank[codes], np.cumsum([len(k) for k in keys])[:-1]) if keys else []
    del codes
    groups = [*zip(to_id, pairs)]
    pairs.clear()
    pointers, rows = _postings(groups, len(order))
    return distinct[order], pointers, rows


def _unpack(keys: np.ndarray) -> list[bytes]:
    """The words packed in ``keys`` (base 37, most significant digit first)."""
    digits = np.zeros((len(keys), _PACKED), dtype=np.uint8)
    rest = keys.copy()
    for k in range(_PACKED - 1, -1, -1):
        digits[:, k] = (rest % _BASE).astype(np.uint8)
        rest //= _BASE
    letters = np.zeros(_BASE, dtype=np.uint8)
    letters[1:] = np.frombuffer(_ALPHABET, dtype=np.uint8)
    chars = letters[digits]
    return [bytes(row).lstrip(b"\0") for row in chars]


def build(batches: Iterable[tuple[np.ndarray, Sequence[pa.Array]]]) -> WordIndex:
    """The index of ``batches``: each a row-index array and one or more string arrays of the same length, already
    lowercased (DuckDB's ``lower()``); a row holds the words of all its arrays, and is in one batch only. Memory:
    8 bytes per distinct (word, row) and (edge, row) while building, 4 once built."""
    powers = _Powers()
    batch_keys, batch_pairs = [], []  # per batch: its distinct packed words; (local word << 32 | row) pairs
    batch_edges, batch_edge_pairs = [], []  # per batch: its distinct edges of local words; (local edge, row) pairs
    long_ids: dict[bytes, int] = {}
    long_pairs, long_edges = set(), set()  # (long word id, row), (long word's edge key, row)
    n_rows = 0
    for row_index, arrays in batches:
        row_index = np.asarray(row_index, dtype=np.int64)
        if not len(row_index):
            continue
        n_rows = max(n_rows, int(row_index.max()) + 1)
        if n_rows > 2**32 or row_index.min() < 0:
            raise ValueError("only row indices 0 to 2**32 - 1 are indexed")
        tokens = [_tokens(array, powers) for array in arrays]
        for t in tokens:
            ids = np.fromiter(
                (long_ids.setdefault(w, len(long_ids)) for w in t.long_words), np.int64, len(t.long_words)
            )
            rows = row_index[t.long_at]
            long_pairs.update(zip(ids.tolist(), rows.tolist()))
            long_edges.update(zip(*(a.tolist() for a in _edge_keys(ids, rows, t.long_before, t.long_after))))
        codes, distinct = pd.factorize(np.concatenate([t.keys for t in tokens]))
        rows = np.concatenate([row_index[t.at] for t in tokens])
        batch_keys.append(np.asarray(distinct, dtype=np.uint64))
        batch_pairs.append(_distinct_pairs(codes, rows))
        edges, edge_rows = _edge_keys(
            codes.astype(np.int64),
            rows,
            *(np.concatenate([getattr(t, a) for t in tokens]) for a in ("before", "after")),
        )
        del tokens, codes, rows
        edge_codes, distinct_edges = pd.factorize(edges)
        batch_edges.append(np.asarray(distinct_edges, dtype=np.int64))
        batch_edge_pairs.append(_distinct_pairs(edge_codes, edge_rows))
    # One id per distinct packed word over all batches, then the long words after them.
    global_codes, packed = pd.factorize(np.concatenate(batch_keys) if batch_keys else np.zeros(0, np.uint64))
    packed = np.asarray(packed, dtype=np.uint64)
    to_word = np.split(global_codes.astype(np.int64), np.cumsum([len(k) for k in batch_keys])[:-1])
    n_words = len(packed) + len(long_ids)
    long_words = np.arange(len(long_ids), dtype=np.int64) + len(packed)
    long_pairs = np.asarray(sorted(a << 32 | b for a, b in long_pairs), dtype=np.int64)
    groups = [*zip(to_word, batch_pairs), (long_words, long_pairs)]
    del batch_pairs, long_pairs  # `groups` holds them alone, so each is freed once copied
    pointers, rows = _postings(groups, n_words)
    # Edges: each batch's keys (of local words) as keys of global word ids, the long words' after them; then one
    # id per distinct key, in key order, so that a look-up is a binary search.
    long_edges = np.asarray(sorted(long_edges), dtype=np.int64).reshape(-1, 2)
    long_edge_keys, long_local = np.unique(long_edges[:, 0], return_inverse=True)
    keys = [
        to_word[b][edges >> _EDGE_SHIFT] << _EDGE_SHIFT | edges & ((1 << _EDGE_SHIFT) - 1)
        for b, edges in enumerate(batch_edges)
    ]
    keys.append(long_edge_keys + (len(packed) << _EDGE_SHIFT))  # a long word's id comes after the packed words'
    long_edge_pairs = np.sort(long_local.reshape(-1).astype(np.int64) << 32 | long_edges[:, 1])
    batch_edge_pairs.append(long_edge_pairs)
    del long_edge_pairs
    edge_keys, edge_pointers, edge_rows = _keyed_postings(keys, batch_edge_pairs)
    words = _unpack(packed) + list(long_ids)
    vocabulary = np.frombuffer(b"\n" + b"".join(w + b"\n" for w in words), dtype=np.uint8)
    lengths = np.fromiter((len(w) + 1 for w in words), dtype=np.int64, count=len(words))
    word_starts = np.cumsum(lengths) - lengths + 1
    return WordIndex(vocabulary, word_starts, pointers, rows, edge_keys, edge_pointers, edge_rows, n_rows)


def batch_columns(batches: Iterable[pa.RecordBatch]) -> Iterator[tuple[np.ndarray, list[pa.Array]]]:
    """``build``'s and ``with_pairs``' batches from Arrow record batches of (row_index, the text columns...)."""
    for batch in batches:
        yield batch.column(0).to_numpy(), batch.columns[1:]


def with_pairs(
    index: WordIndex, batches: Iterable[tuple[np.ndarray, Sequence[pa.Array]]], share: float = PAIR_SHARE
) -> WordIndex:
    """``index`` with its pairs of frequent words (``WordIndex.pair_keys``; a word held by at least ``share`` of the
    rows), read from ``batches``: the same texts ``index`` was built from, read again. Each text's words in turn,
    where one byte alone stands between two frequent words; words not in ``index`` are skipped. Memory: 8 bytes per
    distinct (pair, row) while building, 4 once built."""
    counts = np.diff(np.asarray(index.pointers))
    frequent = np.flatnonzero(counts >= max(share * index.n_rows, 1))
    n_frequent = len(frequent)
    dense = np.full(len(counts) + 1, -1, dtype=np.int64)  # a word id's frequent id; the last entry: a word not found
    dense[frequent] = np.arange(n_frequent)
    word_id = _WordIds(index)
    powers = _Powers()
    batch_keys, batch_pairs = [], []
    for row_index, arrays in batches:
        row_index = np.asarray(row_index, dtype=np.int64)
        keys, rows = [], []
        for array in arrays:
            tokens = _tokens(array, powers)
            ids = dense[word_id(tokens)]
            positions = np.empty(len(ids), dtype=np.int64)
            positions[tokens.short], positions[~tokens.short] = tokens.at, tokens.long_at
            at = np.flatnonzero((tokens.gap_after[:-1] >= 0) & (ids[:-1] >= 0) & (ids[1:] >= 0))
            keys.append((ids[at] * 256 + tokens.gap_after[at]) * n_frequent + ids[at + 1])
            rows.append(row_index[positions[at]])
        codes, distinct = pd.factorize(np.concatenate(keys))
        batch_keys.append(np.asarray(distinct, dtype=np.int64))
        batch_pairs.append(_distinct_pairs(codes, np.concatenate(rows)))
    pair_keys, pair_pointers, pair_rows = _keyed_postings(batch_keys, batch_pairs)
    return dataclasses.replace(
        index, pair_words=frequent, pair_keys=pair_keys, pair_pointers=pair_pointers, pair_rows=pair_rows
    )


class _WordIds:
    """Each word of ``_Tokens`` as its id in an index's vocabulary (-1 for a word not in it), in text order."""

    def __init__(self, index: WordIndex) -> None:
        vocabulary = _tokens(pa.array([np.asarray(index.vocabulary).tobytes().decode("ascii")]), _Powers())
        short_ids = np.flatnonzero(vocabulary.short)
        order = np.argsort(vocabulary.keys)
        self.keys, self.short_ids = vocabulary.keys[order], short_ids[order]
        self.long_ids = dict(zip(vocabulary.long_words, np.flatnonzero(~vocabulary.short).tolist(), strict=True))

    def __call__(self, tokens: _Tokens) -> np.ndarray:
        ids = np.full(len(tokens.short), -1, dtype=np.int64)
        if len(self.keys):
            at = np.minimum(np.searchsorted(self.keys, tokens.keys), len(self.keys) - 1)
            ids[tokens.short] = np.where(self.keys[at] == tokens.keys, self.short_ids[at], -1)
        ids[~tokens.short] = [self.long_ids.get(word, -1) for word in tokens.long_words]
        return ids


def build_from_texts(
    texts: Sequence[Sequence[str | None]], row_index: Sequence[int] | None = None, share: float = PAIR_SHARE
) -> WordIndex:
    """The index of rows given as tuples of texts (already lowercased), with its pairs (``with_pairs``), for tests
    and small inputs."""
    if row_index is None:
        row_index = range(len(texts))
    columns = list(zip(*texts)) if texts else []
    batches = [(np.asarray(row_index, dtype=np.int64), [pa.array(list(c), type=pa.string()) for c in columns])]
    return with_pairs(build(batches), batches, share)
