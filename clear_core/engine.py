"""Scores a batch of rows with a loaded model: every signal of docs/architecture.md, in a handful of batched passes.

``score_batches`` is the batch loop every scoring backend shares (the local worker process, and ``api.score`` in the
caller's process; a Ray replica later): length-sorted batches, and a row that makes the model or the engine raise
isolated as a failed row instead of failing the run.

Per batch: one likelihood pass (response given prompt, and given an empty prompt), one self-reflection pass
(both BSDetector questions), one generation pass (greedy proposal and k samples share the prompt's cache), and one
judge pass (proposal vs response, in both orders). No per-row loop goes around the model.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence

from clear_core import checks, handoff, prompts
from clear_core.confidence import (
    RowSignals,
    ScoringConfig,
    bsdetector_confidence,
    combined_confidence,
    correction_confidence,
    final_number_tokens,
    is_cut_off,
    observed_consistency,
    option_score,
    raw_logit,
)
from clear_core.form import FormModel
from clear_core.model import (
    LoadedModel,
    common_prefix_length,
    continuation_logprobs,
    generate,
    next_token_probs,
)

_MAX_QUOTED_CHARS = 3000  # prompt/response text quoted inside reflection and judge questions
# Rows handed to score_rows at once on a GPU. Its passes size their own batches by a token budget there, so more rows
# per call only means fuller batches: docs/performance.md measured 37.6 rows/s at 256 rows a call on an H200 (k = 0)
# against 2.8 rows/s through the worker at the CPU's 8.
GPU_ROWS_PER_CALL = 256


def score_rows(
    lm: LoadedModel,
    rows: Sequence[dict],
    config: ScoringConfig,
    form: FormModel | None = None,
    examples: Sequence[dict] | None = None,
) -> list[dict]:
    """Signals and confidences for rows of {row_index, prompt_messages, prompt, response}; one dict per row.
    ``form`` is the dataset's form model (form.py), fitted when the run started; without it no form signal.
    ``examples``: the dataset's rows to show before each prompt in the likelihood pass (``choose_examples``),
    used when ``config.context_examples`` > 0, by the likelihood pass and by Auto-Correct (its proposals are written
    and scored after the same turns). Samples and reflection see the prompt alone."""
    if not rows:
        return []
    prefixes = [lm.encode_prompt(r["prompt_messages"])[-config.max_prompt_tokens :] for r in rows]
    encoded = [lm.encode_text_with_offsets(r["response"]) for r in rows]
    responses = [ids[: config.max_response_tokens] for ids, _ in encoded]
    number_tokens = [final_number_tokens(r["response"], spans) for r, (_, spans) in zip(rows, encoded)]

    groups = in_context(lm, rows, examples, config) if config.context_examples > 0 and examples else None
    if groups:
        likelihood = _likelihood_in_context(lm, groups, responses, number_tokens)
    else:
        likelihood = _likelihood(lm, prefixes, responses, number_tokens)
    reflection = _self_reflection(lm, rows) if config.self_reflection else [None] * len(rows)
    seed = config.seed + int(rows[0]["row_index"])
    sampled = generate(
        lm,
        prefixes,
        samples=config.samples,
        greedy=False,
        temperature=config.temperature,
        max_new_tokens=sample_budget(responses, config.max_new_tokens),
        max_batch_size=config.batch_size,
        seed=seed,
    ).samples

    scored = []
    for i, row in enumerate(rows):
        signals = RowSignals(
            row_index=int(row["row_index"]),
            **likelihood[i],
            self_reflection=reflection[i],
            consistency=observed_consistency(sampled[i], row["response"], config.alpha),
            repetition=checks.repetition(row["response"]),
            arithmetic_errors=checks.arithmetic_errors(row["response"]),
            prompt_copy=checks.prompt_copy(row["prompt"], row["response"]),
            unclosed_brackets=checks.unclosed_brackets(row["response"]),
            form_score=form.score(row["response"]) if form is not None else None,
        )
        signals.confidence_bsdetector = bsdetector_confidence(signals.consistency, signals.self_reflection, config.beta)
        signals.raw_logit = raw_logit(vars(signals))
        signals.confidence = combined_confidence(vars(signals))
        scored.append(signals)

    if config.propose:
        _propose(lm, rows, prefixes, [ids for ids, _ in encoded], scored, config, form, groups)
    return [vars(s) for s in scored]


def sample_budget(responses: Sequence[Sequence[int]], cap: int) -> int:
    """Tokens to sample for consistency: enough to cover the longest response in the batch (1.5x + 16), at most
    `cap`. Samples are only compared with the dataset response, so text far beyond its length is wasted compute
    (a small model at temperature 1.0 otherwise rambles to the cap)."""
    longest = max((len(r) for r in responses), default=0)
    return max(16, min(cap, int(1.5 * longest) + 16))


@dataclasses.dataclass
class Proposal:
    """One row's Auto-Correct candidate and what was measured about it (``_propose`` returns these; the stored
    fields are proposed_response, judge_prob and correction_confidence, set only for a proposal that is offered)."""

    text: str
    continues: bool  # the response was cut off, so this is the response and its continuation, not a rewrite
    hit_cap: bool  # generation stopped at max_new_tokens, not at an end of turn
    signals: dict  # the proposal's own signals, as a response's (likelihood, checks, form)
    confidence: float  # combined_confidence of those signals: the model's confidence in its own answer
    problem: str | None  # checks.proposal_problem: why it is not offered; None when it passes
    judge_prob: float | None = None  # judged only when it passes


def _propose(
    lm: LoadedModel,
    rows,
    prefixes,
    response_ids: list[list[int]],
    scored: list[RowSignals],
    config: ScoringConfig,
    form: FormModel | None = None,
    groups: Sequence[InContext] | None = None,
) -> list[Proposal | None]:
    """Auto-Correct candidates for rows whose confidence is low enough, stored on ``scored``; returns each row's
    ``Proposal`` (None where none was made). With ``groups`` (``in_context`` of ``rows``), a proposal is written and
    scored after the example turns the response was scored after, so it follows the dataset's form and its
    confidence is on the response's scale.

    correction_confidence can never exceed 1 − confidence, so rows at or above `propose_below` could only be
    corrected at η < 1 − propose_below; skipping them saves most of the generation cost on clean data.
    A response that is cut off (``is_cut_off``) gets a continuation, prompt + response continued greedily, instead
    of a rewrite; both kinds share one generation pass. Each proposal is then scored like a response (one
    likelihood pass over all of them) and checked: one that is blank, loops, is cut off or echoes the prompt is not
    offered, and is not stored either (a bulk "accept proposals" must never write a loop into the data). The rest
    are judged against the response, and ranked by the judge, the doubt about the response and the model's
    confidence in its own answer (``correction_confidence``).
    """
    out: list[Proposal | None] = [None] * len(rows)
    # a run's calibration copies need only their scores: a proposal for one would be thrown away
    todo = [
        i
        for i, s in enumerate(scored)
        if s.confidence < config.propose_below and not handoff.is_calibration_copy(rows[i])
    ]
    if not todo:
        return out
    continues = {i for i in todo if _continues(rows[i]["response"], response_ids[i], scored[i], config)}
    todo_rows = [rows[i] for i in todo]
    groups = _among(groups, todo) if groups else None
    # each row's prompt: after the example turns (``groups``), or the whole prompt
    prompt_ids = (
        {todo[k]: ids for g in groups for k, ids in zip(g.members, g.own)} if groups else dict(enumerate(prefixes))
    )
    asked = [prompt_ids[i] + response_ids[i] if i in continues else prompt_ids[i] for i in todo]
    generated = _greedy(lm, asked, groups, config)
    texts = [
        join_continuation(rows[i]["response"], text or "") if i in continues else text or ""
        for i, text in zip(todo, generated)
    ]
    hit_cap = [len(lm.encode_text(text or "")) >= config.max_new_tokens - 1 for text in generated]
    signals = proposal_signals(lm, todo_rows, [prefixes[i] for i in todo], texts, config, form, groups)
    for i, text, capped, own in zip(todo, texts, hit_cap, signals):
        problem = checks.proposal_problem(rows[i]["prompt"], text, cut_off=capped or is_cut_off(own))
        out[i] = Proposal(text, i in continues, capped, own, combined_confidence(own), problem)
    offered = [i for i in todo if out[i].problem is None]
    judged = _judge(lm, [rows[i] for i in offered], [out[i].text for i in offered])
    for i, judge_prob in zip(offered, judged):
        out[i].judge_prob = judge_prob
        scored[i].proposed_response = out[i].text
        scored[i].judge_prob = judge_prob
        scored[i].correction_confidence = correction_confidence(judge_prob, scored[i].confidence, out[i].confidence)
        scored[i].proposal_raw_logit = raw_logit(out[i].signals)  # so a calibration maps it as it maps the response
    return out


def _among(groups: Sequence[InContext], keep: list[int]) -> list[InContext]:
    """``groups`` restricted to the rows ``keep`` (indices into the rows they were made for), each member renumbered
    to its place in ``keep``: the prompts already encoded after the turns, not encoded again."""
    place = {i: k for k, i in enumerate(keep)}
    out = []
    for group in groups:
        kept = [(place[i], own) for i, own in zip(group.members, group.own) if i in place]
        if kept:
            out.append(InContext(group.shared, [k for k, _ in kept], [own for _, own in kept], group.uncond))
    return out


def _greedy(
    lm: LoadedModel, asked: list[list[int]], groups: Sequence[InContext] | None, config: ScoringConfig
) -> list[str | None]:
    """The greedy answer to each prompt of ``asked``; with ``groups``, after each group's example turns (their
    KV cache computed once per group), ``asked`` then holding what follows them."""
    kwargs = {
        "samples": 0,
        "greedy": True,
        "max_new_tokens": config.max_new_tokens,
        "max_batch_size": config.batch_size,
    }
    if not groups:
        return generate(lm, asked, **kwargs).greedy
    out: list[str | None] = [None] * len(asked)
    for group in groups:
        answers = generate(lm, [asked[i] for i in group.members], shared=group.shared, **kwargs).greedy
        for i, answer in zip(group.members, answers):
            out[i] = answer
    return out


def _continues(response: str, ids: list[int], signals: RowSignals, config: ScoringConfig) -> bool:
    """Whether to continue the response instead of rewriting it: it is cut off (its own completeness is the
    problem), not blank, not the prompt given back (continuing an echo keeps the echo), and whole within the tokens
    scored (a longer one would be continued from the wrong place)."""
    echoes = (signals.prompt_copy or 0.0) > checks.ECHO_SHARE
    return (
        bool(response.strip()) and not echoes and len(ids) <= config.max_response_tokens and is_cut_off(vars(signals))
    )


_JOINS_WITHOUT_SPACE = re.compile(r"^[.,;:!?)\]}'\"%]")


def join_continuation(response: str, continuation: str) -> str:
    """The response with the model's continuation of it. The decoded continuation has lost its leading space, so
    one goes back in unless the response ends in whitespace or the continuation begins with closing punctuation (a
    response cut inside a word, rare in data, gets a space too many)."""
    continuation = continuation.strip()
    if not continuation:
        return response
    if response[-1:].isspace() or _JOINS_WITHOUT_SPACE.match(continuation):
        return response + continuation
    return response + " " + continuation


def proposal_signals(
    lm: LoadedModel,
    rows: Sequence[dict],
    prefixes: list[list[int]],
    texts: Sequence[str],
    config: ScoringConfig,
    form: FormModel | None = None,
    groups: Sequence[InContext] | None = None,
) -> list[dict]:
    """The signals of proposed texts as responses to their rows' prompts: one batched likelihood pass (with the
    unconditional pass for PMI) and the deterministic checks, the inputs of ``combined_confidence``. With
    ``groups`` (``in_context`` of these rows), the passes run after the example turns, as the responses' did."""
    encoded = [lm.encode_text_with_offsets(t) for t in texts]
    ids = [e[: config.max_response_tokens] for e, _ in encoded]
    numbers = [final_number_tokens(t, spans) for t, (_, spans) in zip(texts, encoded)]
    if groups:
        likelihood = _likelihood_in_context(lm, groups, ids, numbers)
    else:
        likelihood = _likelihood(lm, prefixes, ids, numbers)
    return [
        {
            **lk,
            "repetition": checks.repetition(t),
            "arithmetic_errors": checks.arithmetic_errors(t),
            "prompt_copy": checks.prompt_copy(r["prompt"], t),
            "unclosed_brackets": checks.unclosed_brackets(t),
            "form_score": form.score(t, leave_out=False) if form is not None else None,  # not fitted on it
        }
        for r, t, lk in zip(rows, texts, likelihood)
    ]


def _likelihood(
    lm: LoadedModel, prefixes: list[list[int]], responses: list[list[int]], number_tokens: list[list[int] | None]
) -> list[dict]:
    """Mean log p(response | prompt), the same without the prompt, their difference, p(end or stop right after),
    and log p of the final number's tokens."""
    uncond_prefix = lm.encode_prompt(prompts.UNCONDITIONAL)
    n = len(prefixes)
    passes = continuation_logprobs(lm, prefixes + [uncond_prefix] * n, responses + responses)
    return _likelihood_signals(passes[:n], passes[n:], number_tokens)


# Examples longer than this (prompt and response, in tokens) are not shown: three of them already double a short
# row's pass, and the form shows in short rows as well (bench/form_context.py measured with this cap).
EXAMPLE_MAX_TOKENS = 200


def choose_examples(
    lm: LoadedModel, pool: Sequence[dict], config: ScoringConfig, form: FormModel | None = None
) -> list[dict]:
    """The rows of ``pool`` (a fixed sample of the dataset) to show before each prompt: the
    ``config.context_examples`` + 1 most confident of them, scored without examples, each at most
    EXAMPLE_MAX_TOKENS long (one spare, for a row that is itself an example). Deterministic for a pool, a model and
    a device, so a resumed run shows the same ones. Empty when the config asks for none."""
    if config.context_examples <= 0 or not pool:
        return []
    plain = dataclasses.replace(config, context_examples=0, samples=0, self_reflection=False, propose=False)
    short = [
        r for r in pool if len(lm.encode_text(r["prompt"])) + len(lm.encode_text(r["response"])) <= EXAMPLE_MAX_TOKENS
    ]
    scored = score_rows(lm, short, plain, form)
    ranked = sorted(zip(short, scored), key=lambda pair: (-pair[1]["confidence"], int(pair[0]["row_index"])))
    return [row for row, _ in ranked[: config.context_examples + 1]]


@dataclasses.dataclass
class InContext:
    """Rows that are shown the same example turns: the turns' tokens every prompt begins with (run once, a shared KV
    cache), and after them each member's own prompt and the empty prompt of the unconditional pass."""

    shared: list[int]
    members: list[int]  # indices into the rows given to ``in_context``
    own: list[list[int]]  # each member's prompt after ``shared``, at most config.max_prompt_tokens
    uncond: list[int]  # the empty prompt after ``shared``


def in_context(
    lm: LoadedModel, rows: Sequence[dict], examples: Sequence[dict], config: ScoringConfig
) -> list[InContext]:
    """The rows grouped by the example turns they are shown: the first ``config.context_examples`` of ``examples``,
    except that a row never sees itself (an example row gets the spare example instead)."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, row in enumerate(rows):
        shown = [j for j, e in enumerate(examples) if int(e["row_index"]) != int(row["row_index"])]
        groups.setdefault(tuple(shown[: config.context_examples]), []).append(i)
    out = []
    for shown, members in groups.items():
        turns = []
        for e in (examples[j] for j in shown):
            turns += [*e["prompt_messages"], {"role": "assistant", "content": e["response"]}]
        uncond = lm.encode_prompt(turns + prompts.UNCONDITIONAL)
        shared = uncond[: _shared_length(lm, turns, uncond)]
        own = [lm.encode_prompt(turns + rows[i]["prompt_messages"])[len(shared) :] for i in members]
        out.append(InContext(shared, members, [ids[-config.max_prompt_tokens :] for ids in own], uncond[len(shared) :]))
    return out


def _likelihood_in_context(
    lm: LoadedModel,
    groups: Sequence[InContext],
    responses: list[list[int]],
    number_tokens: list[list[int] | None],
) -> list[dict]:
    """``_likelihood`` with the dataset's example turns before each prompt (``in_context``), and before the empty
    prompt of the unconditional pass: the model has seen what this dataset's responses look like in both, so PMI
    still measures what the prompt adds."""
    out: list[dict] = [{}] * len(responses)
    for group in groups:
        group_responses = [responses[i] for i in group.members]
        cond = continuation_logprobs(lm, group.own, group_responses, shared=group.shared)
        plain = continuation_logprobs(lm, [group.uncond] * len(group.members), group_responses, shared=group.shared)
        for i, signals in zip(
            group.members, _likelihood_signals(cond, plain, [number_tokens[i] for i in group.members])
        ):
            out[i] = signals
    return out


def _shared_length(lm: LoadedModel, turns: list[dict], encoded: list[int]) -> int:
    """How many tokens of ``encoded`` (the turns, then an empty user turn) every prompt after the turns begins
    with: the common beginning with the turns and another user turn, less one (each prompt keeps a token)."""
    return common_prefix_length([encoded, lm.encode_prompt(turns + [{"role": "user", "content": "x"}])])


def _likelihood_signals(conds, unconds, number_tokens: list[list[int] | None]) -> list[dict]:
    """The likelihood signals from the passes given the prompt and given no prompt (``_likelihood``)."""
    out = []
    for cond, uncond, numbers in zip(conds, unconds, number_tokens):
        tokens = cond.token_logprobs
        # An empty response has no tokens of its own: its likelihood is that of ending at once.
        lp = sum(tokens) / len(tokens) if tokens else cond.end_logprob
        lp_uncond = sum(uncond.token_logprobs) / len(uncond.token_logprobs) if uncond.token_logprobs else lp
        numbers = [t for t in numbers or [] if t < len(tokens)]
        out.append(
            {
                "logprob_mean": lp,
                "logprob_min": min(tokens) if tokens else cond.end_logprob,
                "logprob_uncond_mean": lp_uncond,
                "pmi": lp - lp_uncond,
                "eos_prob": math.exp(cond.end_logprob),
                "stop_prob": math.exp(cond.stop_logprob),
                "final_number_logprob": sum(tokens[t] for t in numbers) if numbers else None,
                "n_response_tokens": len(tokens),
            }
        )
    return out


def _option_ids(lm: LoadedModel, letters: Sequence[str]) -> list[int]:
    """Token id of each option letter as it follows the answer prefix "Answer: (" in this tokenizer."""
    base = lm.encode_text(prompts.ANSWER_PREFIX)
    ids = []
    for letter in letters:
        full = lm.encode_text(prompts.ANSWER_PREFIX + letter)
        ids.append(full[-1] if full[: len(base)] == base and len(full) == len(base) + 1 else lm.encode_text(letter)[0])
    return ids


def _quote(text: str) -> str:
    return text if len(text) <= _MAX_QUOTED_CHARS else text[:_MAX_QUOTED_CHARS] + " …"


def _self_reflection(lm: LoadedModel, rows: Sequence[dict]) -> list[float]:
    """BSDetector's S: mean expected score of the two self-reflection questions, from option probabilities.

    Both questions about a row begin with the same prompt and response, which run once (``group_size=2``)."""
    questions = [prompts.reflection_first, prompts.reflection_second]
    encoded = [
        lm.encode_prompt(
            ask(_quote(r["prompt"]), _quote(r["response"])),
            assistant_prefix=prompts.ANSWER_PREFIX,
        )
        for r in rows
        for ask in questions
    ]
    options = _option_ids(lm, prompts.REFLECTION_OPTIONS)
    probs = next_token_probs(lm, encoded, options, group_size=len(questions)).tolist()
    scores = [option_score(p, prompts.REFLECTION_SCORES) for p in probs]
    return [(scores[2 * i] + scores[2 * i + 1]) / 2 for i in range(len(rows))]


def _judge(lm: LoadedModel, rows: Sequence[dict], proposals: Sequence[str | None]) -> list[float | None]:
    """P(proposal is better than the dataset response), averaged over both presentation orders."""
    todo = [
        i
        for i, (r, p) in enumerate(zip(rows, proposals))
        if p is not None and " ".join(p.split()) != " ".join(r["response"].split())
    ]
    out: list[float | None] = [None] * len(rows)
    if not todo:
        return out
    encoded = []
    for i in todo:
        q, y, cand = (
            _quote(rows[i]["prompt"]),
            _quote(rows[i]["response"]),
            _quote(proposals[i]),
        )
        encoded.append(lm.encode_prompt(prompts.judge(q, cand, y), assistant_prefix=prompts.ANSWER_PREFIX))
        encoded.append(lm.encode_prompt(prompts.judge(q, y, cand), assistant_prefix=prompts.ANSWER_PREFIX))
    # both orders begin with the question and the header of response A, which run once (group_size=2)
    probs = next_token_probs(lm, encoded, _option_ids(lm, prompts.JUDGE_OPTIONS), group_size=2)
    probs = probs / probs.sum(dim=1, keepdim=True).clamp(min=1e-12)
    for j, i in enumerate(todo):
        out[i] = float((probs[2 * j, 0] + probs[2 * j + 1, 1]) / 2)  # proposal shown first as A, then second as B
    return out


def score_batches(
    lm: LoadedModel,
    rows: Sequence[dict],
    config: ScoringConfig,
    *,
    stop_requested: Callable[[], bool] = lambda: False,
    score: Callable[[LoadedModel, Sequence[dict], ScoringConfig], list[dict]] | None = None,
    form: FormModel | None = None,
    examples: Sequence[dict] | None = None,
) -> Iterator[list[dict]]:
    """Score ``rows`` in batches of ``config.batch_size`` (at least ``GPU_ROWS_PER_CALL`` on a GPU), yielding one list
    of score records per batch.

    Rows of similar length go together (less padding, less wasted compute), so batches come in length order, not
    input order. A row that cannot be scored comes back as ``{"row_index", "error"}`` (see ``score_isolating``).
    ``stop_requested`` is asked before each batch; when it says yes, ``handoff.Cancelled`` is raised. ``score``
    replaces ``score_rows`` (tests, other engines). ``form``: the dataset's form model, and ``examples``: the rows
    shown before each prompt (``choose_examples``), passed on to ``score``.
    """
    score = score or score_rows  # looked up at call time, so a patched engine.score_rows is the one used
    if form is not None:
        score = functools.partial(score, form=form)
    if examples:
        score = functools.partial(score, examples=examples)
    config = for_device(config, lm)
    ordered = sorted(rows, key=lambda r: len(r["prompt"]) + len(r["response"]))
    for start in range(0, len(ordered), config.batch_size):
        if stop_requested():
            raise handoff.Cancelled()
        yield score_isolating(score, lm, ordered[start : start + config.batch_size], config)


def for_device(config: ScoringConfig, lm: LoadedModel | None) -> ScoringConfig:
    """``config`` with its rows per call raised to ``GPU_ROWS_PER_CALL`` on a GPU; unchanged on a CPU.

    How many rows go through a call is how the work is done, not what a score means, so it stays out of the run's
    parameters (a run started on a CPU resumes on a GPU). Sampled answers (k > 0) draw their seed per call, so they
    differ between devices; the greedy signals do not depend on it.
    """
    device = getattr(getattr(lm, "device", None), "type", "cpu")
    if device == "cpu" or config.batch_size >= GPU_ROWS_PER_CALL:
        return config
    return dataclasses.replace(config, batch_size=GPU_ROWS_PER_CALL)


def score_isolating(score: Callable, lm, rows: Sequence[dict], config) -> list[dict]:
    """``score(lm, rows, config)``, isolating rows that make it raise.

    A failing batch is split in halves and each half scored again, recursively, so n good rows and one bad one cost
    about 2·log2(n) extra calls. A single row that still fails comes back as ``{"row_index", "error"}``. A full disk
    and a cancel are not about a row and propagate.
    """
    try:
        return score(lm, rows, config)
    except handoff.Cancelled:
        raise
    except Exception as exc:  # noqa: BLE001 - any error of the model or engine on these rows is isolated
        if handoff.is_disk_full(exc):
            raise
        if len(rows) == 1:
            print(f"clear-worker: row {rows[0]['row_index']} could not be scored:", file=sys.stderr)
            traceback.print_exc()
            print(handoff.HANDLED_MARK, file=sys.stderr)  # so the owner never quotes this error as a crash's cause
            return [{"row_index": int(rows[0]["row_index"]), "error": handoff.describe(exc)}]
        reason = handoff.describe(exc)
    # retried outside the handler, so a row's traceback in worker.log is not chained to the batch's
    print(f"clear-worker: a batch of {len(rows)} rows failed ({reason}); scoring it in halves", file=sys.stderr)
    middle = len(rows) // 2
    return score_isolating(score, lm, rows[:middle], config) + score_isolating(score, lm, rows[middle:], config)
