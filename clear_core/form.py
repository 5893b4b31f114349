"""A model of what this dataset's responses look like, fitted on the dataset itself: its "house format".

A small LLM judges a response against what responses look like in general; it cannot know that this dataset's
answers are bare code, or one tool call, or worked steps one per line. This module learns that from the rows
themselves, with no labels: a character-shape n-gram model (letters, digits, spaces, line breaks and each
punctuation mark, the text's form rather than its words) fitted on a sample of the dataset's responses. A response
that breaks the house form (chatter around a bare answer, code run into one line, a list where the dataset writes
prose, stray markup) has shapes the model rarely saw, so its mean log-probability per character is low.

Noisy rows are fitted too: they are a minority and their breaks vary, so the model learns the majority form.
A row the model was fitted on is scored with its own counts left out, so a one-off break cannot explain itself,
even in a tiny dataset.
Pure Python, no model passes: about a millisecond a row.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

ORDER = 5  # symbols of context + 1: long enough for "    " indents, ") {\n" and "('...')" call forms
MAX_CHARS = 2000  # only the start of a long response is fitted and scored: the form shows early
FIT_ROWS = 2000  # responses sampled to fit the model; more barely changes it
MARGIN = 2.0  # robust standard deviations below the median a part may fall before it counts: clean rows vary too
REFERENCE_ROWS = 300  # of those, rows scored to learn what a typical score is (median and spread per part)
# where a break shows: the opening, the ending, anywhere, how lines begin, how long they run, and what follows the
# end of a sentence or clause (see `parts`)
_PARTS = ("start", "end", "overall", "line_starts", "lines", "breaks")
# the position right after a sentence or clause ends (. ! ? : ; after a letter, digit or closing bracket, and not
# before a digit: "1.5" has no end): a dataset that writes one step per line puts a line break there, prose a space
_AFTER_END = re.compile(r"(?<=[A-Za-z0-9)\]][.!?:;])(?=\D)")
_START, _END = "^", "$"


def shape(text: str) -> str:
    """The text's form: each letter becomes a or A, each digit 0, other characters stay (spaces, line breaks,
    punctuation); anything else (emoji, symbols) becomes ~. Words and numbers vanish; layout and markup remain."""
    out = []
    for ch in text[:MAX_CHARS]:
        if ch.isalpha():
            out.append("A" if ch.isupper() else "a")
        elif ch.isdigit():
            out.append("0")
        elif ch.isascii():
            out.append(ch)
        else:
            out.append("~")
    return "".join(out)


def _grams(text: str) -> Iterable[tuple[str, str]]:
    """(context, next symbol) pairs of every order 0..ORDER-1 for the shape of `text`, start and end marked."""
    s = _START * (ORDER - 1) + shape(text) + _END
    for i in range(ORDER - 1, len(s)):
        for k in range(ORDER):
            yield s[i - k : i], s[i]


@dataclass
class FormModel:
    """Witten-Bell interpolated n-gram counts over shapes: P(c | h) = (C(h c) + T(h)·P(c | shorter h)) / (C(h) + T(h)),
    with T(h) the number of distinct symbols seen after h, down to a uniform floor over the symbols seen."""

    counts: dict[tuple[str, str], int]  # C(h c)
    totals: dict[str, int]  # C(h)
    types: dict[str, int]  # T(h)
    vocabulary: int
    # part -> (median, robust spread, symbols it averages over in a short response: the lower quartile)
    reference: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    fitted: set[str] = field(default_factory=set)  # digests of the texts fitted on: those are scored left out

    @classmethod
    def fit(cls, responses: Sequence[str], seed: int = 0) -> FormModel:
        """Fit on up to FIT_ROWS responses drawn at random (reproducibly) from `responses`."""
        picked = responses if len(responses) <= FIT_ROWS else random.Random(seed).sample(list(responses), FIT_ROWS)
        counts: Counter = Counter()
        for text in picked:
            counts.update(_grams(text))
        totals: Counter = Counter()
        types: Counter = Counter()
        for (h, _), n in counts.items():
            totals[h] += n
            types[h] += 1
        vocabulary = len({c for _, c in counts}) + 1  # +1: room for a symbol never seen
        model = cls(dict(counts), dict(totals), dict(types), vocabulary, fitted={_digest(t) for t in picked})
        model.reference = _reference([model._parts_and_sizes(text, None) for text in picked[:REFERENCE_ROWS]])
        return model

    def parts(self, text: str, leave_out: bool | None = None) -> dict[str, float]:
        """Mean log-probability of the opening 16 symbols, of the last 8 (the end marker included), of the first two
        of each line, the mean shortfall below −3 nats over the whole text, minus the log length of its longest
        line, and the mean log-probability of the symbol after each sentence or clause end: where chatter, stray
        markup, list markers and a lost layout show (an n-gram cannot see that a line runs far longer than usual,
        and in a long text a few run-on sentence ends are lost in the whole-text mean)."""
        return self._parts_and_sizes(text, leave_out)[0]

    def _parts_and_sizes(self, text: str, leave_out: bool | None) -> tuple[dict[str, float], dict[str, int]]:
        """`parts`, and how many symbols each part averages over. Line starts, the longest line and sentence ends
        count as 1, so they keep full weight in `score`: a text run into one line has few line starts *because* it
        is broken."""
        values = self.symbol_logprobs(text, leave_out)
        head = text[:MAX_CHARS]
        longest = max((len(line) for line in head.split("\n")), default=0)
        starts = [0] + [i + 1 for i, ch in enumerate(head) if ch == "\n"]
        opening = [v for j in starts for v in values[j : j + 2]]  # the first two symbols of each line
        after_end = [values[m.start()] for m in _AFTER_END.finditer(head)]
        parts = {
            "start": sum(values[:16]) / len(values[:16]),
            "end": sum(values[-8:]) / len(values[-8:]),
            "overall": sum(min(v + 3.0, 0.0) for v in values) / len(values),
            "line_starts": sum(opening) / len(opening),
            "lines": -math.log1p(longest),
            "breaks": sum(after_end) / len(after_end) if after_end else 0.0,  # no sentence end: nothing odd there
        }
        sizes = {"start": len(values[:16]), "end": len(values[-8:]), "overall": len(values)}
        return parts, {**sizes, "line_starts": 1, "lines": 1, "breaks": 1}

    def score(self, text: str, leave_out: bool | None = None) -> float:
        """How far the text's form is from this dataset's: the sum over `parts` of how many robust standard
        deviations each falls below the dataset's median beyond MARGIN (0 for a typical response, more negative the
        odder). A part that averages over fewer symbols than in three quarters of the dataset's responses (a one-word
        answer) varies more by chance, so its deviation is shrunk by √(its symbols / theirs): "No" is not odd for
        an opening of two symbols."""
        parts, sizes = self._parts_and_sizes(text, leave_out)
        total = 0.0
        for name, (median, spread, short) in self.reference.items():
            weight = math.sqrt(min(1.0, sizes[name] / short))
            total += min(0.0, weight * (parts[name] - median) / spread + MARGIN)
        return total

    def logprob(self, text: str, leave_out: bool | None = None) -> float:
        """Mean natural log-probability per symbol of the text's shape. `leave_out` removes the text's own counts
        first; by default it does so exactly for the texts the model was fitted on."""
        values = self.symbol_logprobs(text, leave_out)
        return sum(values) / len(values)

    def symbol_logprobs(self, text: str, leave_out: bool | None = None) -> list[float]:
        """Natural log-probability of each symbol of the text's shape (its end marker included)."""
        if leave_out is None:
            leave_out = _digest(text) in self.fitted
        own = Counter(_grams(text)) if leave_out else Counter()
        own_totals: Counter = Counter()
        for (h, _), n in own.items():
            own_totals[h] += n
        values = []
        s = _START * (ORDER - 1) + shape(text) + _END
        for i in range(ORDER - 1, len(s)):
            p = 1.0 / self.vocabulary
            for k in range(ORDER):
                h = s[i - k : i]
                seen = self.totals.get(h, 0)
                c_own = min(own[(h, s[i])], self.counts.get((h, s[i]), 0))
                c = self.counts.get((h, s[i]), 0) - c_own
                n = seen - min(own_totals[h], seen)
                t = self.types.get(h, 0) - (1 if c_own and c == 0 else 0)
                if n <= 0 or t <= 0:
                    break  # this context (without the text itself) was never seen: longer ones were not either
                p = (c + t * p) / (n + t)
            values.append(math.log(p))
        return values

    def to_json(self) -> str:
        return json.dumps(
            {
                "order": ORDER,
                "vocabulary": self.vocabulary,
                "reference": self.reference,
                "fitted": sorted(self.fitted),
                "counts": [[h, c, n] for (h, c), n in self.counts.items()],
            },
            ensure_ascii=True,
        )

    @classmethod
    def from_json(cls, text: str) -> FormModel:
        data = json.loads(text)
        if data.get("order") != ORDER:
            raise ValueError(f"form model of order {data.get('order')}, expected {ORDER}: fit it again")
        counts = {(h, c): n for h, c, n in data["counts"]}
        totals: Counter = Counter()
        types: Counter = Counter()
        for (h, _), n in counts.items():
            totals[h] += n
            types[h] += 1
        # a model saved before the typical sizes were kept (two numbers a part) scores as it did then: size 1
        reference = {name: (*value, 1.0)[:3] for name, value in data["reference"].items()}
        return cls(counts, dict(totals), dict(types), data["vocabulary"], reference, set(data.get("fitted", ())))


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def _reference(rows: Sequence[tuple[dict[str, float], dict[str, int]]]) -> dict[str, tuple[float, float, float]]:
    """Median and robust spread (1.4826 · median absolute deviation, at least 0.05) of each part over rows, and the
    lower quartile of the number of symbols the part averages over (below it, a response counts as short)."""
    out = {}
    for name in _PARTS:
        values = sorted(parts[name] for parts, _ in rows)
        median = _median(values)
        spread = 1.4826 * _median(sorted(abs(v - median) for v in values))
        counts = sorted(sizes[name] for _, sizes in rows)
        short = counts[len(counts) // 4] if counts else 1
        out[name] = (median, max(spread, 0.05), max(short, 1.0))
    return out


def _median(values: Sequence[float]) -> float:
    n = len(values)
    if n == 0:
        return 0.0
    return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2
