"""Exact and near-duplicate texts (responses or prompts) as groups of row indices; pure: lists in, lists out.

Two texts are near-duplicates when the Jaccard similarity of their word 3-gram sets (after lower-casing and
collapsing whitespace) is at least ``DEFAULT_THRESHOLD`` = 0.8: a paraphrase that changes one number or a word or
two in a long answer stays above it, two different answers to the same question fall well below it. Exact
duplicates (equal after that normalisation) are the threshold-1 case and are always grouped.

How: MinHash signatures (``NUM_PERM`` = 64 hash functions of the shingles, numpy-vectorised, fixed seed) split
into ``BANDS`` = 16 bands of 4 rows; texts sharing a band are candidates (a pair at Jaccard 0.8 shares one with
probability 1 − (1 − 0.8⁴)¹⁶ ≈ 0.9998), every candidate is verified with its exact Jaccard, and verified pairs are
joined with union-find, so a group is the connected set (a ~ b and b ~ c put a, b, c in one group even when a and
c are further apart). Empty or missing texts are never duplicates. The same input always gives the same groups.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

DEFAULT_THRESHOLD = 0.8  # Jaccard of word 3-gram sets
SHINGLE_WORDS = 3
NUM_PERM = 64
BANDS = 16
SEED = 1729
_EMPTY = np.uint64(1 << 32)  # above every hash value: the signature of an empty set
_CHUNK = 1 << 21  # shingle hashes × permutations per numpy block (16 MB of uint64)


def normalise(text: str | None) -> str:
    """Lower-cased, whitespace runs collapsed to one space, trimmed; '' for None."""
    return " ".join((text or "").lower().split())


def shingles(text: str | None, words: int = SHINGLE_WORDS) -> set[str]:
    """The set of ``words``-word shingles of the normalised text (a shorter text is one shingle; '' none)."""
    tokens = normalise(text).split()
    if len(tokens) <= words:
        return {" ".join(tokens)} if tokens else set()
    return {" ".join(tokens[i : i + words]) for i in range(len(tokens) - words + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    """|a ∩ b| / |a ∪ b|; 0.0 when both are empty."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def similarity(a: str | None, b: str | None, words: int = SHINGLE_WORDS) -> float:
    """Jaccard similarity of two texts' shingle sets, in [0, 1] (1 = the same after normalisation)."""
    return jaccard(shingles(a, words), shingles(b, words))


def similarities(text: str | None, others: Sequence[str | None]) -> list[float]:
    """``similarity`` of ``text`` to each of ``others``, each distinct text shingled once: a group of exact
    duplicates (133 rows each at 1M rows of cycled GSM8K) costs one shingling, not 2 per row."""
    mine, found = shingles(text), {}
    for other in others:
        if other not in found:
            found[other] = jaccard(mine, shingles(other))
    return [found[other] for other in others]


def signatures(shingle_sets: Sequence[set[str]], num_perm: int = NUM_PERM, seed: int = SEED) -> np.ndarray:
    """MinHash signatures, one row of ``num_perm`` values per set (an empty set's row is all 2³²).

    Each of the ``num_perm`` hash functions is a multiply-shift hash ((a·x + b) mod 2⁶⁴) >> 32 of the shingle's
    CRC-32, with odd a and b drawn from ``seed``: universal, and no modulo in the inner loop."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 1 << 63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, 1 << 63, size=num_perm, dtype=np.uint64)
    out = np.full((len(shingle_sets), num_perm), _EMPTY, dtype=np.uint64)
    lengths = np.array([len(s) for s in shingle_sets], dtype=np.int64)
    hashes = np.fromiter(
        (zlib.crc32(s.encode()) for shingle_set in shingle_sets for s in shingle_set),
        dtype=np.uint64,
        count=int(lengths.sum()),
    )
    ends = np.cumsum(lengths)
    starts = ends - lengths
    block = max(1, _CHUNK // num_perm)
    first = 0
    while first < len(shingle_sets):  # whole texts per block, each block about _CHUNK values
        last = first
        while last < len(shingle_sets) and (last == first or ends[last] - starts[first] <= block):
            last += 1
        nonempty = [i for i in range(first, last) if lengths[i]]
        if nonempty:
            x = hashes[starts[first] : ends[last - 1]]
            values = (x[:, None] * a[None, :] + b[None, :]) >> np.uint64(32)  # uint64 arithmetic wraps
            offsets = starts[nonempty] - starts[first]
            out[nonempty] = np.minimum.reduceat(values, offsets, axis=0)
        first = last
    return out


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def _union(parent: list[int], i: int, j: int) -> None:
    ri, rj = _find(parent, i), _find(parent, j)
    if ri != rj:
        parent[max(ri, rj)] = min(ri, rj)


def duplicate_groups(
    texts: Sequence[str | None],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    shingle_words: int = SHINGLE_WORDS,
    num_perm: int = NUM_PERM,
    bands: int = BANDS,
    seed: int = SEED,
) -> list[list[int]]:
    """Groups of positions in ``texts`` whose texts are exact or near-duplicates of each other.

    threshold: the least Jaccard similarity of word ``shingle_words``-gram sets for two texts to be joined (1.0:
    exact duplicates only). Returns only groups of two or more, each sorted, ordered by their first position.
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
    if num_perm % bands:
        raise ValueError(f"num_perm ({num_perm}) must be a multiple of bands ({bands})")
    n = len(texts)
    parent = list(range(n))
    normalised = [normalise(t) for t in texts]
    first_seen: dict[str, int] = {}
    for i, text in enumerate(normalised):  # exact duplicates: one representative each goes on to MinHash
        if text:
            _union(parent, first_seen.setdefault(text, i), i)
    if threshold < 1:
        reps = [i for i, text in enumerate(normalised) if text and first_seen[text] == i]
        sets = [shingles(normalised[i], shingle_words) for i in reps]
        sig = signatures(sets, num_perm, seed)
        rows = num_perm // bands
        checked: set[tuple[int, int]] = set()
        mix = np.random.default_rng(seed + 1).integers(1, 1 << 63, size=rows, dtype=np.uint64) | np.uint64(1)
        for band in range(bands):
            keys = (sig[:, band * rows : (band + 1) * rows] * mix).sum(axis=1)  # wraps mod 2⁶⁴; collisions verified
            order = np.argsort(keys, kind="stable")
            sorted_keys = keys[order]
            cuts = np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1
            for bucket in np.split(order, cuts):
                if len(bucket) < 2:
                    continue
                for x, p in enumerate(bucket):
                    for q in bucket[x + 1 :]:
                        i, j = reps[p], reps[q]
                        if (p, q) in checked or _find(parent, i) == _find(parent, j):
                            continue
                        checked.add((p, q))
                        if jaccard(sets[p], sets[q]) >= threshold:
                            _union(parent, i, j)
    members: dict[int, list[int]] = {}
    for i in range(n):
        if normalised[i]:
            members.setdefault(_find(parent, i), []).append(i)
    return sorted((group for group in members.values() if len(group) > 1), key=lambda g: g[0])
