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

Words of up to 12 bytes are packed exactly into one integer (base 37: 37**12 < 2**63), so building needs no
dictionary of strings and no hash that could collide; longer words go through a Python dict. Pure numpy: no
database, testable on lists of strings (``build_from_texts``).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

__all__ = ["WordIndex", "build", "build_from_texts", "query_runs"]

_ALPHABET = b"abcdefghijklmnopqrstuvwxyz0123456789"
_BASE = 37  # a word byte's code is 1-36, so a packed word never starts with a zero digit
_PACKED = 12  # the longest word packed into an int64: 37**12 < 2**63
_CODE = np.zeros(256, dtype=np.uint64)
_CODE[np.frombuffer(_ALPHABET, dtype=np.uint8)] = np.arange(1, _BASE, dtype=np.uint64)
_IS_WORD = _CODE > 0
_SEPARATOR = ord("\n")  # between the vocabulary's words (never a word byte)
_ARRAYS = ("vocabulary", "word_starts", "pointers", "rows")  # what WordIndex.save writes, one .npy file each


@dataclasses.dataclass(frozen=True)
class WordIndex:
    """The words of a set of texts and, for each word, the sorted row indices of the texts that hold it.

    vocabulary: every distinct word, each followed by a newline (``b"w1\\nw2\\n..."``), preceded by one newline.
    word_starts: where each word begins in ``vocabulary``. pointers: word i's rows are
    ``rows[pointers[i]:pointers[i + 1]]``. n_rows: one more than the largest row index indexed."""

    vocabulary: np.ndarray  # uint8
    word_starts: np.ndarray  # int64
    pointers: np.ndarray  # int64
    rows: np.ndarray  # uint32 or int64
    n_rows: int

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.vocabulary, self.word_starts, self.pointers, self.rows))

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
        hit = np.zeros(self.n_rows, dtype=bool)
        begin, end = self.pointers[words], self.pointers[words + 1]
        lengths = end - begin
        total = int(lengths.sum())
        if total:
            shift = np.repeat(begin - (np.cumsum(lengths) - lengths), lengths)
            hit[self.rows[np.arange(total, dtype=np.int64) + shift]] = True
        return hit

    def candidates(self, lowered_query: str) -> tuple[np.ndarray, bool] | None:
        """The sorted row indices whose texts may contain ``lowered_query`` (already DuckDB-``lower()``-ed), and
        whether they are exactly the rows that do (a query that is one run of word bytes alone); None when the
        query has no word byte to look up."""
        runs = query_runs(lowered_query)
        if not runs:
            return None
        hit = None
        for run, at_start, at_end in runs:
            found = self.rows_of(self.words_matching(run, at_start, at_end))
            hit = found if hit is None else hit & found
            if not hit.any():
                break
        exact = len(runs) == 1 and not runs[0][1] and not runs[0][2]
        return np.flatnonzero(hit), exact


def query_runs(lowered_query: str) -> list[tuple[bytes, bool, bool]]:
    """The query's maximal runs of word bytes, each with whether a separator comes before it (so the text's word
    starts with it) and after it (so the word ends with it)."""
    data = np.frombuffer(lowered_query.encode("utf-8"), dtype=np.uint8)
    word = _IS_WORD[data]
    if not word.any():
        return []
    edges = np.flatnonzero(np.diff(np.concatenate(([False], word, [False])).astype(np.int8)))
    return [(data[s:e].tobytes(), s > 0, e < len(data)) for s, e in zip(edges[::2].tolist(), edges[1::2].tolist())]


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


def _tokens(array: pa.Array, powers: _Powers) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[bytes]]:
    """The words of a string array: (packed key per word of up to 12 bytes, its position in the array; position
    per longer word, and the longer words' bytes)."""
    array = array.cast(pa.large_string())
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64, count=len(array) + 1, offset=array.offset * 8)
    values = array.buffers()[2]
    data = np.frombuffer(values, dtype=np.uint8) if values is not None else np.zeros(0, np.uint8)
    data = data[offsets[0] : offsets[-1]]
    offsets = offsets - offsets[0]
    n = len(data)
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty.astype(np.uint64), empty, empty, []
    edges = np.diff(_IS_WORD[data].view(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    del edges
    # A word that runs from one row's end into the next row's start is two words: cut it at the row boundary.
    inner = offsets[1:-1]
    inner = inner[(inner > 0) & (inner < n)]
    cut = inner[_IS_WORD[data[inner - 1]] & _IS_WORD[data[inner]]]
    if len(cut):
        starts = np.sort(np.concatenate((starts, cut)))
        ends = np.sort(np.concatenate((ends, cut)))
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
    positions = np.searchsorted(offsets, starts, side="right") - 1
    long = ~short
    long_words = [data[a:b].tobytes() for a, b in zip(starts[long].tolist(), ends[long].tolist())]
    return keys, positions[short], positions[long], long_words


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
    8 bytes per distinct (word, row) while building, 4 once built."""
    powers = _Powers()
    batch_keys, batch_pairs = [], []  # per batch: its distinct packed words; (local word << 32 | row) pairs
    long_ids: dict[bytes, int] = {}
    long_pairs = []
    n_rows = 0
    for row_index, arrays in batches:
        row_index = np.asarray(row_index, dtype=np.int64)
        if not len(row_index):
            continue
        n_rows = max(n_rows, int(row_index.max()) + 1)
        if n_rows > 2**32 or row_index.min() < 0:
            raise ValueError("only row indices 0 to 2**32 - 1 are indexed")
        keys, rows = [], []
        for array in arrays:
            k, at, long_at, long_words = _tokens(array, powers)
            keys.append(k)
            rows.append(row_index[at])
            for word, row in zip(long_words, row_index[long_at].tolist()):
                long_pairs.append((long_ids.setdefault(word, len(long_ids)), row))
        codes, distinct = pd.factorize(np.concatenate(keys))
        rows_all = np.concatenate(rows)
        pairs = np.sort(codes.astype(np.int64) << 32 | rows_all)
        pairs = pairs[np.concatenate(([True], pairs[1:] != pairs[:-1]))]
        batch_keys.append(np.asarray(distinct, dtype=np.uint64))
        batch_pairs.append(pairs)
    # One id per distinct packed word over all batches, then the long words after them; the (word << 32 | row)
    # pairs of every batch go into one array, each batch's freed as it is copied, and are sorted in place.
    global_codes, packed = pd.factorize(np.concatenate(batch_keys) if batch_keys else np.zeros(0, np.uint64))
    packed = np.asarray(packed, dtype=np.uint64)
    longs = np.asarray(sorted(set(long_pairs)), dtype=np.int64).reshape(-1, 2)
    del long_pairs
    allpairs = np.empty(sum(len(p) for p in batch_pairs) + len(longs), dtype=np.int64)
    at = 0
    for keys in batch_keys:
        local, pairs = global_codes[: len(keys)], batch_pairs.pop(0)
        global_codes = global_codes[len(keys) :]
        np.bitwise_or(local[pairs >> 32].astype(np.int64) << 32, pairs & 0xFFFFFFFF, out=allpairs[at : at + len(pairs)])
        at += len(pairs)
    allpairs[at:] = (longs[:, 0] + len(packed)) << 32 | longs[:, 1]
    allpairs.sort()  # rows are in one batch each, so the pairs are distinct
    n_words = len(packed) + len(long_ids)
    pointers = np.searchsorted(allpairs, np.arange(n_words + 1, dtype=np.int64) << 32)
    low = 0 if np.little_endian else 1  # a pair's row is its low 32 bits
    rows = allpairs.view(np.uint32)[low::2].copy()
    del allpairs
    words = _unpack(packed) + list(long_ids)
    vocabulary = np.frombuffer(b"\n" + b"".join(w + b"\n" for w in words), dtype=np.uint8)
    lengths = np.fromiter((len(w) + 1 for w in words), dtype=np.int64, count=len(words))
    word_starts = np.cumsum(lengths) - lengths + 1
    return WordIndex(vocabulary, word_starts, pointers, rows, n_rows)


def build_from_texts(texts: Sequence[Sequence[str | None]], row_index: Sequence[int] | None = None) -> WordIndex:
    """The index of rows given as tuples of texts (already lowercased), for tests and small inputs."""
    if row_index is None:
        row_index = range(len(texts))
    columns = list(zip(*texts)) if texts else []
    arrays = [pa.array(list(c), type=pa.string()) for c in columns]
    return build([(np.asarray(row_index, dtype=np.int64), arrays)])
