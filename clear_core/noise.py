"""Labelled noise injection for the detection-quality benchmark (`bench/quality.py`).

Each recipe turns a clean (prompt, response) row into a realistic bad response of one kind, so that detection
(AUROC, precision/recall) and correction can be measured per kind against known labels. Everything here is pure
and seeded; the only I/O is `load_dev_rows`, which reads the dev files.

Recipes have the signature `(row, rng, context) -> str`: `row` is `{"prompt", "response"}`, `rng` a
`random.Random`, `context` a `NoiseContext` (the whole dataset, for donors). A recipe that cannot corrupt a row
raises `NoiseNotApplicable`; `inject_noise` then falls back to another recipe and labels the row with the
recipe that actually produced its text.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from clear_core.metrics import NUMBER_PATTERN, normalize_tokens

__all__ = [
    "CLASSIC_KINDS",
    "NOISE_KINDS",
    "OFF_TOPIC_POOL",
    "RECIPES",
    "NoiseContext",
    "NoiseNotApplicable",
    "corrupt",
    "inject_noise",
    "load_dev_rows",
]


class NoiseNotApplicable(ValueError):
    """A recipe cannot produce a response that differs from the clean one for this row."""


@dataclass
class NoiseContext:
    """The dataset a row belongs to: donors for `swapped`/`paper_style`, entities for `numbers_changed`.

    `index` is the position of the row being corrupted (excluded as a donor); -1 when the row is not in the
    dataset. Use `for_row(i)` to move to another row while sharing the cached per-dataset data.
    """

    prompts: Sequence[str]
    responses: Sequence[str]
    index: int = -1
    _cache: dict = field(default_factory=dict, repr=False)

    def for_row(self, index: int) -> NoiseContext:
        return NoiseContext(self.prompts, self.responses, index, self._cache)

    def word_counts(self) -> list[int]:
        """Words per response, computed once per dataset."""
        if "word_counts" not in self._cache:
            self._cache["word_counts"] = [len(r.split()) for r in self.responses]
        return self._cache["word_counts"]

    def prompt_words(self, j: int) -> frozenset[str]:
        """Content words of prompt `j`, memoised (paper_style compares many prompts)."""
        memo = self._cache.setdefault("prompt_words", {})
        if j not in memo:
            memo[j] = _content_words(self.prompts[j])
        return memo[j]


def _same(a: str, b: str) -> bool:
    """Equal up to whitespace runs: a corruption must change more than spacing to count."""
    return a.split() == b.split()


# --------------------------------------------------------------------------------------------------------------
# swapped
# --------------------------------------------------------------------------------------------------------------


def _pick_donor(clean: str, context: NoiseContext, rng: random.Random, candidates: Sequence[int]) -> str:
    """A donor response from `candidates` (other rows) that differs from `clean`."""
    usable = [j for j in candidates if j != context.index and not _same(context.responses[j], clean)]
    if not usable:
        raise NoiseNotApplicable("no other row has a different response")
    return context.responses[rng.choice(usable)]


def swapped(row: dict, rng: random.Random, context: NoiseContext) -> str:
    """The response of another row drawn uniformly at random: usually blatantly unrelated to the prompt."""
    n = len(context.responses)
    for _ in range(20):  # rejection sampling: cheap on large datasets
        j = rng.randrange(n) if n else -1
        if n and j != context.index and not _same(context.responses[j], row["response"]):
            return context.responses[j]
    return _pick_donor(row["response"], context, rng, range(n))


# --------------------------------------------------------------------------------------------------------------
# truncated
# --------------------------------------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"[.!?:;]['\")\]]*$")


def truncated(row: dict, rng: random.Random, context: NoiseContext) -> str:
    """The clean text cut after k of its n words, k drawn from [20%, 70%] of n (at least 1, at most n - 1).

    The cut keeps the original characters (newlines included) up to the end of word k, adds nothing, and
    prefers a word that does not end a sentence so the text stops mid-sentence.
    """
    words = list(re.finditer(r"\S+", row["response"]))
    n = len(words)
    if n < 2:
        raise NoiseNotApplicable("a response of fewer than two words cannot be cut at a word boundary")
    lo = min(max(1, math.ceil(0.2 * n)), n - 1)
    hi = max(lo, min(math.floor(0.7 * n), n - 1))
    choices = list(range(lo, hi + 1))
    mid_sentence = [k for k in choices if not _SENTENCE_END.search(words[k - 1].group())]
    k = rng.choice(mid_sentence or choices)
    return row["response"][: words[k - 1].end()]


# --------------------------------------------------------------------------------------------------------------
# off_topic
# --------------------------------------------------------------------------------------------------------------

OFF_TOPIC_POOL: tuple[str, ...] = (
    "I'm sorry, but I can't help with that request.",
    "As an AI language model, I don't have personal opinions or feelings.",
    "I'm unable to browse the internet, so I can't look that up for you right now.",
    "I cannot provide an answer because this request may violate our content policy.",
    "Thank you for your question! Let me know if there is anything else I can help you with.",
    "Great question! There are many factors to consider, and the answer depends on your situation.",
    "Honey never spoils: archaeologists have found edible honey in ancient Egyptian tombs.",
    "Octopuses have three hearts, and two of them stop beating while the animal swims.",
    "The Eiffel Tower can grow more than 15 centimetres taller in summer as its iron expands.",
    "Sure! To bake chocolate chip cookies, cream butter and sugar, add eggs, then fold in flour and chips.",
    "Subscribe to our newsletter for weekly tips, exclusive offers and early access to new features.",
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt.",
)


def off_topic(row: dict, rng: random.Random, context: NoiseContext) -> str:
    """A generic refusal, assistant boilerplate or unrelated trivia from `OFF_TOPIC_POOL`."""
    pool = [s for s in OFF_TOPIC_POOL if not _same(s, row["response"])]
    return rng.choice(pool)


# --------------------------------------------------------------------------------------------------------------
# format_broken
# --------------------------------------------------------------------------------------------------------------

# (prefix, suffix) pairs: an unterminated JSON object, mismatched HTML, a leaked chat template, an open fence.
_STRAY_MARKUP = (
    ('{"response": "', ""),
    ('{"output": [', "}"),
    ("<div><p><b>", "</i></span>"),
    ("[INST] ", " [/INST]</s>"),
    ("```json\n{\n", "\n```\n```"),
    ("<response>\n", ""),
)


def _markup(text: str, rng: random.Random) -> str:
    prefix, suffix = rng.choice(_STRAY_MARKUP)
    return prefix + text + suffix


def _caps(text: str, rng: random.Random) -> str:
    return text.upper()


def _jammed(text: str, rng: random.Random) -> str:
    """Newlines removed without a separator and about half of the remaining spaces dropped (at least one)."""
    flat = re.sub(r"\s*\n\s*", "", text.strip())
    gaps = [m.start() for m in re.finditer(r" +", flat)]
    drop = {g for g in gaps if rng.random() < 0.5}
    if gaps and not drop:
        drop = {rng.choice(gaps)}
    return re.sub(r" +", lambda m: "" if m.start() in drop else " ", flat)


def _repeated(text: str, rng: random.Random) -> str:
    """One line (or sentence, for one-line text) repeated 2-4 extra times in place, like a decoding loop."""
    lines = text.split("\n")
    if len(lines) > 1:
        i = rng.randrange(len(lines))
        while not lines[i].strip():
            i = rng.randrange(len(lines))
        return "\n".join(lines[: i + 1] + [lines[i]] * rng.randint(2, 4) + lines[i + 1 :])
    sentences = re.split(r"(?<=[.!?])\s+", text.strip())
    i = rng.randrange(len(sentences))
    return " ".join(sentences[: i + 1] + [sentences[i]] * rng.randint(2, 4) + sentences[i + 1 :])


_FORMAT_STYLES: dict[str, Callable[[str, random.Random], str]] = {
    "markup": _markup,
    "caps": _caps,
    "jammed": _jammed,
    "repeated": _repeated,
}


def format_broken(row: dict, rng: random.Random, context: NoiseContext) -> str:
    """The right content in a broken form; one sub-style at random among those that change this text.

    Sub-styles: stray markup (unterminated JSON, mismatched tags, leaked chat-template tokens), ALL CAPS,
    newlines removed with words jammed together, or a line repeated as in a degenerate decoding loop.
    """
    text = row["response"]
    if not text.strip():
        raise NoiseNotApplicable("an empty response has no format to break")
    styles = list(_FORMAT_STYLES.values())
    rng.shuffle(styles)
    for style in styles:
        out = style(text, rng)
        if not _same(out, text):
            return out
    raise NoiseNotApplicable("no format_broken sub-style changes this response")


# --------------------------------------------------------------------------------------------------------------
# numbers_changed
# --------------------------------------------------------------------------------------------------------------

# List enumerators ("1. ", "2) " at the start of a line) are structure, not facts: numbers_changed skips them. The
# spaces are possessive and a bullet brings its own, so an indent has one reading (a line of 100k spaces took 71 s).
_ENUMERATOR = re.compile(r"^[ \t]*+(?:[-*][ \t]*+)?(\d{1,3})[.)](?=\s)", re.MULTILINE)

_ANTONYMS = {
    "yes": "no",
    "true": "false",
    "correct": "incorrect",
    "positive": "negative",
    "increase": "decrease",
    "increases": "decreases",
    "more": "less",
    "larger": "smaller",
    "bigger": "smaller",
    "higher": "lower",
    "before": "after",
    "hot": "cold",
    "good": "bad",
    "always": "never",
    "all": "none",
    "first": "last",
    "best": "worst",
    "north": "south",
    "east": "west",
    "left": "right",
    "up": "down",
    "open": "closed",
    "happy": "sad",
    "easy": "difficult",
    "fast": "slow",
    "early": "late",
    "agree": "disagree",
    "possible": "impossible",
    "legal": "illegal",
    "healthy": "unhealthy",
    "include": "exclude",
    "maximum": "minimum",
    "same": "different",
    "inside": "outside",
    "win": "lose",
    "buy": "sell",
    "strong": "weak",
    "old": "new",
    "spam": "ham",
    "fact": "opinion",
}
_ANTONYMS.update({v: k for k, v in list(_ANTONYMS.items())})
_ANTONYM_RE = re.compile(r"\b(" + "|".join(sorted(_ANTONYMS, key=len, reverse=True)) + r")\b", re.IGNORECASE)

# Negation: add "not" after an auxiliary, or remove an existing negation.
_ADD_NOT = re.compile(
    r"\b(is|are|was|were|can|will|does|do|did|should|could|would|has|have|must)\b(?! not\b)",
    re.IGNORECASE,
)
_REMOVE_NOT = re.compile(
    r"\b(?:(cannot)|(can't|won't|don't|doesn't|isn't|aren't|wasn't|weren't|didn't)|(\w+) not)\b",
    re.IGNORECASE,
)
_CONTRACTION_BASE = {
    "can't": "can",
    "won't": "will",
    "don't": "do",
    "doesn't": "does",
    "isn't": "is",
    "aren't": "are",
    "wasn't": "was",
    "weren't": "were",
    "didn't": "did",
}

# A capitalised name that does not start a sentence (so "The" after a full stop is not an entity).
_ENTITY = re.compile(r"(?<=[a-z0-9,;:] )(?:[A-Z][a-z]+)(?: [A-Z][a-z]+)*")


def _match_case(word: str, template: str) -> str:
    if template.isupper() and len(template) > 1:
        return word.upper()
    if template[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def _new_number(raw: str, rng: random.Random) -> str:
    """A different value for the number written `raw`, in the same style (commas, decimal places, sign)."""
    body = raw.replace(",", "")
    if body.lstrip("-").startswith("."):
        body = body.replace(".", "0.", 1)
    decimals = len(body.partition(".")[2])
    value = float(body)
    if not math.isfinite(value):  # 300+ digits read as infinity: the recipe falls back to another kind
        raise NoiseNotApplicable(f"the number {raw[:20]}… is too large to change")
    if decimals:
        step = 10.0**-decimals
        options = [value + k * step for k in (-3, -2, -1, 1, 2, 3)] + [value * 2]
    else:
        options = [value + d for d in (-2, -1, 1, 2, 10)] + [
            value * 2,
            value // 2 if value > 3 else value + 3,
        ]
    if value >= 0:  # a count or a price stays non-negative
        options = [o for o in options if o >= 0]
    options = [o for o in options if round(o, decimals) != round(value, decimals)]
    new = rng.choice(options)
    text = f"{new:,.{decimals}f}" if "," in raw else f"{new:.{decimals}f}"
    return "0" if text in ("-0", "-0.0") else text


def _change_final_number(text: str, rng: random.Random) -> str | None:
    enumerators = {m.start(1) for m in _ENUMERATOR.finditer(text)}
    matches = [m for m in NUMBER_PATTERN.finditer(text) if m.start() not in enumerators]
    if not matches:
        return None
    last = matches[-1]
    return text[: last.start()] + _new_number(last.group(), rng) + text[last.end() :]


def _swap_antonym(text: str, rng: random.Random) -> str | None:
    matches = list(_ANTONYM_RE.finditer(text))
    if not matches:
        return None
    m = rng.choice(matches)
    return text[: m.start()] + _match_case(_ANTONYMS[m.group().lower()], m.group()) + text[m.end() :]


def _negate(text: str, rng: random.Random) -> str | None:
    removals = list(_REMOVE_NOT.finditer(text))
    if removals:
        m = rng.choice(removals)
        cannot, contraction, aux = m.groups()
        if cannot:
            repl = _match_case("can", cannot)
        elif contraction:
            repl = _match_case(_CONTRACTION_BASE[contraction.lower()], contraction)
        else:
            repl = aux
        return text[: m.start()] + repl + text[m.end() :]
    additions = list(_ADD_NOT.finditer(text))
    if not additions:
        return None
    m = rng.choice(additions)
    word = m.group()
    repl = _match_case("cannot", word) if word.lower() == "can" else word + " not"
    return text[: m.start()] + repl + text[m.end() :]


def _replace_entity(text: str, rng: random.Random, context: NoiseContext) -> str | None:
    """Swap one named entity for one taken from another row (searching at most 50 random rows)."""
    own = list(_ENTITY.finditer(text))
    if not own or len(context.responses) < 2:
        return None
    m = rng.choice(own)
    n = len(context.responses)
    donors = rng.sample(range(n), min(n, 50))
    others = {e for j in donors if j != context.index for e in _ENTITY.findall(context.responses[j])}
    others.discard(m.group())
    if not others:
        return None
    return text[: m.start()] + rng.choice(sorted(others)) + text[m.end() :]


def numbers_changed(row: dict, rng: random.Random, context: NoiseContext) -> str:
    """A wrong fact with everything else intact: the final number (GSM8K: the answer) gets another value.

    Only the last number changes, so the reasoning stays plausible and only the answer (or the last step's
    arithmetic) is wrong. Without a number, one fact-like word changes instead, chosen at random among what
    applies: an antonym swap (yes/no, positive/negative, ...), a negation added or removed, or a named entity
    replaced by one from another row. Raises `NoiseNotApplicable` when none applies.
    """
    text = row["response"]
    out = _change_final_number(text, rng)
    if out is not None and not _same(out, text):
        return out
    edits = [
        lambda: _swap_antonym(text, rng),
        lambda: _negate(text, rng),
        lambda: _replace_entity(text, rng, context),
    ]
    rng.shuffle(edits)
    for edit in edits:
        out = edit()
        if out is not None and not _same(out, text):
            return out
    raise NoiseNotApplicable("no number, antonym, negatable verb or named entity to change")


# --------------------------------------------------------------------------------------------------------------
# paper_style
# --------------------------------------------------------------------------------------------------------------

_STOPWORD_LINES = (
    "i me my we our you your he she it its they them their is are was were be been being have has had do does did",
    "and or but if of at by for with about to from in on off over under then than so that this these those what",
    "which who whom how when where why can will would should could not no all any each some such only own same",
    "very just into out up down as",
)
_STOPWORDS = frozenset(word for line in _STOPWORD_LINES for word in line.split())
_CANDIDATES = 200  # donors examined per row: bounds the cost on large datasets
_SHORT = 4  # responses of at most this many words are treated as labels / short answers


def _content_words(text: str) -> frozenset[str]:
    return frozenset(t for t in normalize_tokens(text) if t not in _STOPWORDS)


def paper_style(row: dict, rng: random.Random, context: NoiseContext) -> str:
    """A plausible but wrong answer to the same prompt: the answer of the most similar *other* prompt.

    Approximates the CLEAR paper's noisy datasets, whose bad rows carry a wrong but well-formed answer of the
    right type (not gibberish). Among up to 200 random other rows whose response length is similar (same short
    answer class for <= 4 words, i.e. a label flip for classification; otherwise 0.67x-1.5x the words), take the
    one whose prompt shares the most content words with this prompt (Jaccard), ties broken at random.
    Differs from `swapped`, whose donor is uniform over all rows and so usually obviously unrelated in topic,
    length and form.
    """
    clean = row["response"]
    n = len(context.responses)
    counts = context.word_counts()
    own = len(clean.split())

    def similar_length(j: int) -> bool:
        if own <= _SHORT:
            return counts[j] <= _SHORT
        return own / 1.5 <= counts[j] <= own * 1.5

    pool = rng.sample(range(n), min(n, _CANDIDATES * 5))
    candidates = [
        j for j in pool if j != context.index and similar_length(j) and not _same(context.responses[j], clean)
    ][:_CANDIDATES]
    if not candidates:  # no donor of similar length: nearest length among the pool instead
        candidates = sorted(
            (j for j in pool if j != context.index and not _same(context.responses[j], clean)),
            key=lambda j: abs(counts[j] - own),
        )[:10]
    if not candidates:
        raise NoiseNotApplicable("no other row has a different response")
    words = _content_words(row["prompt"])

    def overlap(j: int) -> float:
        other = context.prompt_words(j)
        union = words | other
        return len(words & other) / len(union) if union else 0.0

    scored = [(overlap(j), rng.random(), j) for j in candidates]
    return context.responses[max(scored)[2]]


# --------------------------------------------------------------------------------------------------------------
# house_format (a break of this dataset's own form) and prompt_echo: the kinds added for issue 8
# --------------------------------------------------------------------------------------------------------------

_CHATTY = (
    ("Sure! Here is the answer:\n\n```\n", "\n```\n\nLet me know if you need anything else!"),
    ("Of course. ", " I hope this helps!"),
    ("**Answer:**\n\n", "\n\n---\n*Generated response*"),
    ("Response: ", ""),
)


def _chatty(text: str, rng: random.Random) -> str:
    """Assistant chatter and markdown around the answer: wrong wherever the dataset's answers are bare."""
    prefix, suffix = rng.choice(_CHATTY)
    return prefix + text.strip() + suffix


def _one_line(text: str, rng: random.Random) -> str:
    """Every line break replaced by one space: a multi-line answer (code, worked steps, a list) run together."""
    return re.sub(r"\s*\n\s*", " ", text.strip())


def _dedented(text: str, rng: random.Random) -> str:
    """Leading indentation stripped from every line (code whose nesting is lost)."""
    return "\n".join(line.lstrip() for line in text.split("\n"))


def _bulleted(text: str, rng: random.Random) -> str:
    """Each line (or sentence, for one-line text) turned into a numbered or bulleted list item."""
    lines = [line for line in text.strip().split("\n") if line.strip()]
    if len(lines) < 2:
        lines = re.split(r"(?<=[.!?])\s+", text.strip())
    if len(lines) < 2:
        return text
    marker = rng.choice(("- ", "* ", "#"))
    return "\n".join((f"{i}. " if marker == "#" else marker) + line.strip() for i, line in enumerate(lines, 1))


def _quoted_json(text: str, rng: random.Random) -> str:
    """The answer serialised as a JSON string field, escapes and all."""
    return json.dumps({rng.choice(("answer", "output", "text")): text.strip()}, ensure_ascii=False)


_HOUSE_STYLES: dict[str, Callable[[str, random.Random], str]] = {
    "chatty": _chatty,
    "one_line": _one_line,
    "dedented": _dedented,
    "bulleted": _bulleted,
    "quoted_json": _quoted_json,
}


def house_format(row: dict, rng: random.Random, context: NoiseContext) -> str:
    """The right content in a form this dataset does not use: a break of its house format, not of text in general.

    Unlike `format_broken` (markup, caps, jammed words, loops: wrong anywhere), each sub-style here is well-formed
    text that is only wrong because of what the dataset's other responses look like: chatter and markdown around a
    bare answer, a multi-line answer run into one line, code stripped of its indentation, prose made into a list,
    the answer wrapped as a JSON string. One sub-style at random among those that change this text.
    """
    text = row["response"]
    if not text.strip():
        raise NoiseNotApplicable("an empty response has no format to break")
    styles = list(_HOUSE_STYLES.values())
    rng.shuffle(styles)
    for style in styles:
        out = style(text, rng)
        if out.strip() != text.strip():
            return out
    raise NoiseNotApplicable("no house_format sub-style changes this response")


_ECHO_LEADS = ("", "The task is: ", "Question: ", "You asked: ")


def prompt_echo(row: dict, rng: random.Random, context: NoiseContext) -> str:
    """The prompt repeated instead of answered (a copy-the-input failure of generation), sometimes with a lead-in
    and the first words of the real answer after it."""
    prompt = row["prompt"].strip()
    if not prompt or _same(prompt, row["response"]):
        raise NoiseNotApplicable("the prompt is empty or already the response")
    out = rng.choice(_ECHO_LEADS) + prompt
    if rng.random() < 0.3:
        words = row["response"].split()
        out += "\n\n" + " ".join(words[: max(1, len(words) // 5)])
    return out


# --------------------------------------------------------------------------------------------------------------
# Injection
# --------------------------------------------------------------------------------------------------------------

RECIPES: dict[str, Callable[[dict, random.Random, NoiseContext], str]] = {
    "swapped": swapped,
    "truncated": truncated,
    "off_topic": off_topic,
    "format_broken": format_broken,
    "numbers_changed": numbers_changed,
    "paper_style": paper_style,
    "house_format": house_format,
    "prompt_echo": prompt_echo,
}
NOISE_KINDS: tuple[str, ...] = tuple(RECIPES)
# The six kinds docs/quality.md's first tables were measured on; issue 8 added house_format and prompt_echo.
CLASSIC_KINDS: tuple[str, ...] = NOISE_KINDS[:6]

_RETRIES = 3  # attempts per recipe before falling back (recipes are random, a retry can succeed)


def _fallback_chain(kind: str, kinds: Sequence[str]) -> list[str]:
    """Recipes to try for `kind`: itself, then swapped, off_topic, the other requested kinds, then swapped and
    off_topic even if not requested (off_topic always succeeds), so that a row drawn as noisy is noisy."""
    chain = [kind]
    chain += [k for k in ("swapped", "off_topic") if k in kinds]
    chain += list(kinds) + ["swapped", "off_topic"]
    return list(dict.fromkeys(chain))


def corrupt(
    row: dict,
    kind: str,
    rng: random.Random,
    context: NoiseContext,
    kinds: Sequence[str] = NOISE_KINDS,
):
    """Corrupt one row with `kind`, falling back when it cannot; returns (text, kind actually used).

    The returned text always differs from the clean response by more than whitespace, except for `house_format`,
    whose breaks of layout (lines run together, indentation lost) may change whitespace alone.
    """
    for candidate in _fallback_chain(kind, kinds):
        for _ in range(_RETRIES):
            try:
                out = RECIPES[candidate](row, rng, context)
            except NoiseNotApplicable:
                break
            # house_format may change only layout (code run into one line, indentation lost): that is its point
            changed = out != row["response"] if candidate == "house_format" else not _same(out, row["response"])
            if changed:
                return out, candidate
    raise NoiseNotApplicable(f"could not corrupt row {context.index}")  # unreachable: off_topic always differs


def _even_kinds(m: int, kinds: Sequence[str], rng: random.Random) -> list[str]:
    """`m` kind labels, each kind used m // K or m // K + 1 times (which kinds get one more is random)."""
    base, extra = divmod(m, len(kinds))
    labels = [k for k in kinds for _ in range(base)] + rng.sample(list(kinds), extra)
    rng.shuffle(labels)
    return labels


def inject_noise(
    rows: Sequence[dict],
    fraction: float = 0.3,
    kinds: Sequence[str] = NOISE_KINDS,
    seed: int = 0,
) -> pd.DataFrame:
    """Corrupt exactly round(fraction * n) randomly chosen rows, kinds spread as evenly as possible.

    Returns one row per input row with columns row_index, prompt, response (corrupted or not), clean_response,
    is_noisy, noise_kind (None for clean rows). `noise_kind` is the recipe that produced the text: when the
    assigned recipe cannot apply to a row (e.g. `truncated` on a one-word answer) the row falls back (see
    `corrupt`), so per-kind counts can deviate from perfectly even on such data. Reproducible for a given seed;
    each row's corruption uses its own generator derived from (seed, row_index).
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
    kinds = tuple(kinds)
    unknown = [k for k in kinds if k not in RECIPES]
    if not kinds or unknown:
        raise ValueError(f"unknown noise kinds {unknown}; choose from {NOISE_KINDS}")
    prompts, responses = [], []
    for i, row in enumerate(rows):
        if not isinstance(row.get("prompt"), str) or not isinstance(row.get("response"), str):
            raise TypeError(f"row {i} needs string 'prompt' and 'response' fields")
        prompts.append(row["prompt"])
        responses.append(row["response"])
    n = len(rows)
    rng = random.Random(seed)
    noisy = sorted(rng.sample(range(n), round(fraction * n)))
    assigned = dict(zip(noisy, _even_kinds(len(noisy), kinds, rng), strict=True))
    context = NoiseContext(prompts, responses)
    out_responses, out_kinds = list(responses), [None] * n
    for i, kind in assigned.items():
        row_rng = random.Random(f"{seed}:{i}")
        row = {"prompt": prompts[i], "response": responses[i]}
        out_responses[i], out_kinds[i] = corrupt(row, kind, row_rng, context.for_row(i), kinds)
    return pd.DataFrame(
        {
            "row_index": pd.Series(range(n), dtype="int64"),
            "prompt": pd.Series(prompts, dtype=object),
            "response": pd.Series(out_responses, dtype=object),
            "clean_response": pd.Series(responses, dtype=object),
            "is_noisy": pd.Series([k is not None for k in out_kinds], dtype=bool),
            "noise_kind": pd.Series(out_kinds, dtype=object),
        }
    )


# --------------------------------------------------------------------------------------------------------------
# Dev data
# --------------------------------------------------------------------------------------------------------------


def _prompt(instruction: str, input_text: str | None) -> str:
    """Alpaca convention (see docs/architecture.md): instruction, then a blank line and the input if any."""
    return instruction + "\n\n" + input_text if input_text and input_text.strip() else instruction


def _read_records(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        return json.loads(text)
    records = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{line_no}: not valid JSON ({err.msg})") from err
    return records


def load_dev_rows(path: str | Path, n: int | None = None, seed: int = 0) -> list[dict]:
    """Read an Alpaca JSON array or a self-instruct JSONL (instances flattened) and sample `n` rows reproducibly.

    Each row is {"prompt", "response", "source_index"} (source_index: position after flattening); rows with an
    empty response are skipped. `n=None` or `n` larger than the file gives every row. Sampled rows keep file order.
    """
    path = Path(path)
    rows: list[dict] = []
    for rec_no, rec in enumerate(_read_records(path)):
        if "instruction" not in rec:
            raise ValueError(f"{path}: record {rec_no} has no 'instruction' field")
        if "instances" in rec:
            pairs = [(inst.get("input", ""), inst.get("output", "")) for inst in rec["instances"]]
        elif "output" in rec or "response" in rec:  # Alpaca's `output`, GPTeacher's `response`
            pairs = [(rec.get("input", ""), rec["output"] if "output" in rec else rec["response"])]
        else:
            raise ValueError(f"{path}: record {rec_no} has neither 'output', 'response' nor 'instances'")
        for input_text, output in pairs:
            rows.append({"prompt": _prompt(rec["instruction"], input_text), "response": output})
    rows = [
        dict(r, source_index=i) for i, r in enumerate(rows) if isinstance(r["response"], str) and r["response"].strip()
    ]
    if n is None or n >= len(rows):
        return rows
    picked = sorted(random.Random(seed).sample(range(len(rows)), n))
    return [rows[i] for i in picked]
