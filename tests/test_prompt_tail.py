"""See the question: the Review page's prompt box shows the end of a long prompt (where the question is) without
scrolling, and the whole prompt in an expander."""

from __future__ import annotations

import html
import json

from clear_core import workspace
from clear_core.store import Store
from clear_core.ui_state import PROMPT_TAIL_CHARS, PROMPT_TAIL_LINES, prompt_label, prompt_tail

REVIEW = "app_pages/review.py"
QUESTION = "Question: how many clips did Natalia sell altogether in April and May?"
CONTEXT = [f"Context line {i}: Natalia sold clips to {i} of her friends & <neighbours>." for i in range(40)]


def test_a_short_prompt_is_shown_whole():
    assert prompt_tail("What is 2 + 2?") == ("What is 2 + 2?", 0)
    five = "\n".join(f"line {i}" for i in range(PROMPT_TAIL_LINES))
    assert prompt_tail(five) == (five, 0)
    assert prompt_tail(None) == ("", 0)
    assert prompt_label(0, 14) == "Prompt"


def test_a_long_prompt_keeps_its_last_lines_and_says_how_much_is_left_out():
    text = "\n".join([*CONTEXT, QUESTION])
    tail, hidden = prompt_tail(text)
    assert text.endswith(tail) and hidden == len(text) - len(tail) > 0
    assert tail.endswith(QUESTION) and len(tail) <= PROMPT_TAIL_CHARS
    assert len(tail.splitlines()) <= PROMPT_TAIL_LINES
    assert tail.startswith("Context line")  # whole lines where they fit
    assert prompt_label(hidden, len(text)) == (
        f"Prompt: its last {len(tail):,} of {len(text):,} characters ({hidden:,} earlier ones under Full prompt)"
    )


def test_one_long_line_is_cut_at_a_word_near_the_limit():
    text = " ".join(["word"] * 200) + " " + QUESTION
    tail, hidden = prompt_tail(text)
    assert tail.endswith(QUESTION) and text.endswith(tail) and not tail.startswith(("ord", "rd", "d", " "))
    assert PROMPT_TAIL_CHARS - 40 <= len(tail) <= PROMPT_TAIL_CHARS and hidden == len(text) - len(tail)
    no_spaces = "x" * 1000
    assert prompt_tail(no_spaces) == ("x" * PROMPT_TAIL_CHARS, 1000 - PROMPT_TAIL_CHARS)


def test_the_review_page_shows_the_question_of_a_long_prompt_and_the_rest_on_demand(tmp_path, monkeypatch, app):
    long_prompt = "\n".join([*CONTEXT, QUESTION])
    source = tmp_path / "long.jsonl"
    rows = [{"prompt": long_prompt, "response": "72 clips."}, {"prompt": "What is 2 + 2?", "response": "4"}]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    path = tmp_path / "long.duckdb"
    monkeypatch.setenv("CLEAR_DB", str(path))
    monkeypatch.setenv("CLEAR_NO_DEMO", "1")
    with Store(path) as store:
        dataset_id = workspace.import_file(store, source)
        run_id = store.create_run(dataset_id, "synthetic", {})
        store.add_scores(run_id, [{"row_index": 0, "confidence": 0.1}, {"row_index": 1, "confidence": 0.9}])
        store.set_run_status(run_id, "done")

    at = app(REVIEW)  # least confident first: the long prompt
    assert not at.exception
    box = next(h.value for h in at.html if "Prompt: its last" in h.value)
    assert html.escape(QUESTION) in box and "…" in box
    assert "Context line 0:" not in box and "earlier ones under Full prompt" in box
    assert [e.label for e in at.expander if e.label == "Full prompt"] == ["Full prompt"]
    full = [h.value for h in at.html if "Context line 0:" in h.value]
    assert len(full) == 1 and html.escape(CONTEXT[0]) in full[0] and html.escape(QUESTION) in full[0]

    at.session_state["review_row"] = 1  # the short prompt: shown whole, no expander
    at.run()
    assert any("Prompt</p>" in h.value and "What is 2 + 2?" in h.value for h in at.html)
    assert not [e for e in at.expander if e.label == "Full prompt"]
