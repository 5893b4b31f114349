"""Word-level diff of a response and its proposed replacement, for the review screen.

Every piece of text is HTML-escaped before it is wrapped in markup, so dataset text can never inject HTML.
"""

from __future__ import annotations

import difflib
import html
import re

# Words, runs of whitespace, and runs of punctuation: "72." vs "73." differs in the number only.
_TOKEN = re.compile(r"\w+|\s+|[^\w\s]+")


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _merge(ops: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Adjacent ops of the same kind joined; within a run of changes, deletions come before insertions."""
    merged: list[tuple[str, str]] = []
    deleted, inserted = [], []

    def flush() -> None:
        if deleted:
            merged.append(("delete", "".join(deleted)))
        if inserted:
            merged.append(("insert", "".join(inserted)))
        deleted.clear()
        inserted.clear()

    for op, text in ops:
        if op == "equal":
            flush()
            if merged and merged[-1][0] == "equal":
                text = merged.pop()[1] + text
            merged.append(("equal", text))
        else:
            (deleted if op == "delete" else inserted).append(text)
    flush()
    return merged


def word_diff(original: str, proposed: str) -> list[tuple[str, str]]:
    """Ops ('equal' | 'delete' | 'insert', text) on words and whitespace.

    The equal + delete texts join to ``original`` and the equal + insert texts to ``proposed``.
    """
    a, b = _tokens(original), _tokens(proposed)
    ops: list[tuple[str, str]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        left, right = "".join(a[i1:i2]), "".join(b[j1:j2])
        if tag == "equal":
            ops.append(("equal", left))
        else:
            ops.extend(op for op in (("delete", left), ("insert", right)) if op[1])
    return _merge(_fold_lone_whitespace(ops))


def _fold_lone_whitespace(ops: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """An equal run of whitespace between two changes becomes a deletion plus an insertion of it."""
    out = []
    for i, (op, text) in enumerate(ops):
        between = 0 < i < len(ops) - 1 and ops[i - 1][0] != "equal" and ops[i + 1][0] != "equal"
        if op == "equal" and between and not text.strip():
            out.extend([("delete", text), ("insert", text)])
        else:
            out.append((op, text))
    return out


def _escape(text: str) -> str:
    return html.escape(text).replace("\r\n", "\n").replace("\n", "<br>")


def diff_html(original: str, proposed: str) -> tuple[str, str]:
    """(left, right) HTML: the original with deletions in <del class="clear-del">, the proposal with insertions in
    <ins class="clear-ins">; all text escaped, newlines as <br>."""
    left, right = [], []
    for op, text in word_diff(original, proposed):
        escaped = _escape(text)
        if op in ("equal", "delete"):
            left.append(escaped if op == "equal" else f'<del class="clear-del">{escaped}</del>')
        if op in ("equal", "insert"):
            right.append(escaped if op == "equal" else f'<ins class="clear-ins">{escaped}</ins>')
    return "".join(left), "".join(right)
