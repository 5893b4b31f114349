"""Word diff for the review screen: both sides reproducible, and no dataset text ever reaches the page unescaped."""

from __future__ import annotations

import html
import re

import pytest

from clear_core.diff import diff_html, word_diff

PAIRS = [
    ("Natalia sold 72 clips.", "Natalia sold 73 clips in total."),
    ("", "brand new answer"),
    ("answer that is removed", ""),
    ("same text", "same text"),
    ("line one\nline two\r\n\tend", "line one\nline 2\n\tend  "),
    ("猫は可愛い 🐈 ok", "犬は可愛い 🐕 ok!"),
    ("one two three", "uno dos three"),
]


def side(ops: list[tuple[str, str]], keep: str) -> str:
    return "".join(text for op, text in ops if op in ("equal", keep))


@pytest.mark.parametrize(("original", "proposed"), PAIRS)
def test_ops_reproduce_both_sides(original, proposed):
    ops = word_diff(original, proposed)
    assert side(ops, "delete") == original
    assert side(ops, "insert") == proposed
    assert all(op in ("equal", "delete", "insert") and text for op, text in ops)
    assert all(a[0] != b[0] for a, b in zip(ops, ops[1:]))  # adjacent ops of one kind are merged


def test_only_the_changed_word_is_marked():
    assert word_diff("Natalia sold 72 clips.", "Natalia sold 73 clips.") == [
        ("equal", "Natalia sold "),
        ("delete", "72"),
        ("insert", "73"),
        ("equal", " clips."),
    ]


def test_neighbouring_changed_words_form_one_highlight():
    assert word_diff("one two three", "uno dos three") == [
        ("delete", "one two"),
        ("insert", "uno dos"),
        ("equal", " three"),
    ]


def test_identical_text_has_no_changes():
    assert word_diff("same text", "same text") == [("equal", "same text")]
    assert diff_html("a\nb", "a\nb") == ("a<br>b", "a<br>b")


def visible_text(fragment: str) -> str:
    """What a browser shows for a fragment: <br> as a newline, tags dropped, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", fragment.replace("<br>", "\n")))


@pytest.mark.parametrize(("original", "proposed"), PAIRS)
def test_html_shows_each_side(original, proposed):
    left, right = diff_html(original, proposed)
    assert visible_text(left) == original.replace("\r\n", "\n")
    assert visible_text(right) == proposed.replace("\r\n", "\n")


def test_dataset_text_cannot_inject_html():
    original = "Say <script>alert(\"x\")</script> & <b onmouseover='steal()'>hi</b>"
    proposed = 'Say <img src=x onerror="alert(1)"> & <script>alert("y")</script>'
    left, right = diff_html(original, proposed)
    for fragment in (left, right):
        tags = re.findall(r"<(/?[a-z]+)", fragment)
        assert set(tags) <= {"del", "/del", "ins", "/ins", "br"}
        assert "&lt;script&gt;" in fragment
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in right
    assert "onmouseover=&#x27;steal()&#x27;" in left


def test_changes_are_marked_on_their_own_side():
    left, right = diff_html("The answer is 4.\nDone", "The answer is 5.\nDone")
    assert left == 'The answer is <del class="clear-del">4</del>.<br>Done'
    assert right == 'The answer is <ins class="clear-ins">5</ins>.<br>Done'
