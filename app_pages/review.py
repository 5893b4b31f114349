"""Review: the queue of scored rows (least confident first) and, for the current row, the prompt, the response
next to the model's proposal with a word diff, the signals, and the decision buttons with keyboard shortcuts."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app_pages import _session
from app_pages._components import (
    actor,
    annotator,
    diff_blocks,
    get_store,
    guard,
    html_line,
    md_plain,
    plain,
    require_dataset,
    require_scores,
    run_progress,
    safe_callback,
    show_callback_error,
    text_block,
)
from clear_core import clear, dedupe
from clear_core.permissions import allowed
from clear_core.store import NUMERIC_SCORE_FIELDS, REASON_DECISIONS, REASONS, ReviewQuery
from clear_core.ui_state import (
    ACTION_LABELS,
    DECISION_LABELS,
    FAILED_LABEL,
    GROUP_ACTIONS,
    REASON_LABELS,
    SIGNAL_HELP,
    SORTS,
    STATUS_FILTERS,
    bulk_accept_query,
    decided_before,
    format_score,
    free_position,
    group_dry_run,
    group_wording,
    n_pages,
    prompt_label,
    prompt_tail,
    queue_table,
    run_bar,
    shorten,
    stays_in_queue,
    step,
    undo_group_label,
)

PAGE_SIZE = 50
# What a decision on a row can carry to its near-duplicates (store.decide_duplicates).
DUPLICATE_CHOICES = {"remove": "Remove", "reject": "Keep original", "accept": "Accept their own proposals"}
ACTION_COLORS = {"filter": "red", "correct": "green", "keep": "gray"}
state = st.session_state


# -- moving through the queue ---------------------------------------------------------------------------------


def notify(message: str, icon: str) -> None:
    """A toast for the page to show once it is drawn: callbacks run inside the page's fragment, where an element drawn
    by the callback itself is unsupported (Streamlit warns on every decision)."""
    state.setdefault("review_toasts", []).append((message, icon))


def show_toasts() -> None:
    for message, icon in state.pop("review_toasts", []):
        st.toast(message, icon=icon)


def busy(dataset_id: int, rows: list[int]) -> dict[int, list[str]]:
    """Rows of ``rows`` that other reviewers have open (and that need nobody else), to skip: none in local mode's
    one-person case or before a name is entered."""
    return get_store().busy_rows(dataset_id, rows, actor=actor()) if annotator() and rows else {}


def go(delta: int, dataset_id: int | None = None) -> None:
    """Next (+1) or previous (-1) row, crossing page boundaries and skipping rows others have open."""
    rows = state.get("review_rows", [])
    page, position = step(state.get("review_page", 1), state.get("review_pos", 0), len(rows), state.review_pages, delta)
    if page != state.get("review_page", 1):
        state.review_page = page
        state.review_row = None
    else:
        if dataset_id is not None:
            position = free_position(rows, position, busy(dataset_id, rows), delta)
        state.review_row = rows[position] if rows else None
    state.review_pos = position
    state.review_editing = None
    clear_reason()


def select_row(key: str) -> None:
    selected = state[key]["selection"]["rows"]
    if selected:
        state.review_row = state.review_rows[selected[0]]
        state.review_editing = None
        clear_reason()


def clear_reason() -> None:
    """Forget the reason and note picked for the current row (after its decision, or on moving to another row)."""
    state.review_reason = None
    state.review_note = ""


def pick_reason(reason: str) -> None:
    """Keys 1-6: choose the reason that Remove or Reject records; the same key again clears it."""
    state.review_reason = None if state.get("review_reason") == reason else reason


def reset_page() -> None:
    state.review_page = 1
    state.review_row = None
    state.review_pos = 0


@safe_callback
def decide(dataset_id: int, run_id: int, row_index: int, decision: str, edit_key: str | None = None) -> None:
    """Record the decision (committed at once), then move on to the next row of the queue."""
    final = state.get(edit_key) if edit_key else None
    why = {}
    if decision in REASON_DECISIONS:
        why = {"reason": state.get("review_reason"), "note": state.get("review_note") or None}
    get_store().record_decision(
        dataset_id, row_index, decision, run_id=run_id, final_response=final, **why, actor=actor()
    )
    state.review_editing = None
    reason = f" ({REASON_LABELS[why['reason']].lower()})" if why.get("reason") else ""
    clear_reason()
    notify(f"Row {row_index}: {DECISION_LABELS[decision].lower()}{reason}.", icon=":material/check:")
    rows, position = state.review_rows, state.review_pos
    reason_kept = state.get("review_reason_filter", "any") in ("any", why.get("reason"))  # still matches the filter
    earlier = decided_before(get_store().row_decisions(dataset_id, row_index), annotator(), _utc_now())
    if earlier:  # someone decided this row while it was open here: both stay in the log, the latest counts
        notify(f"Row {row_index}: {'; '.join(earlier)}. Yours is the latest, so it counts.", icon=":material/group:")
    if position + 1 < len(rows):
        position = free_position(rows, position + 1, busy(dataset_id, rows), +1)
        state.review_row = rows[position]
        state.review_pos = position
    elif stays_in_queue(state.review_status, decision) and reason_kept:
        go(+1, dataset_id)
    else:
        state.review_row = None  # the row leaves the queue; the next one slides into its place


@safe_callback
def undo(dataset_id: int) -> None:
    undone = get_store().undo_last_decision(dataset_id, actor())
    if undone is None:
        notify("You have no decision left to undo.", icon=":material/info:")
        return
    state.review_row = int(undone["row_index"])
    state.review_editing = None
    notify(
        f"Undid “{DECISION_LABELS[undone['decision']].lower()}” on row {undone['row_index']}.", icon=":material/undo:"
    )


@safe_callback
def accept_many(dataset_id: int, run_id: int, gamma: float) -> None:
    """Accept every undecided proposal above the chosen correction confidence (worked out at the click)."""
    n = get_store().accept_proposals(bulk_accept_query(run_id, gamma, state.bulk_threshold), actor=actor())
    notify(f"Accepted {n:,} proposals.", icon=":material/done_all:")


@safe_callback
def decide_all(query: ReviewQuery, decision: str) -> None:
    """Record ``decision`` on every row the filters select (worked out at the click), as one group."""
    _, n = get_store().decide_query(query, decision, actor=actor())
    state.group_confirm = False
    notify(f"{group_wording(decision, n)}: done, as one group.", icon=":material/select_all:")


@safe_callback
def undo_group(group_id: int) -> None:
    n = get_store().undo_group(group_id, actor=actor())
    notify(f"Undid the group: {n:,} rows are back to their earlier decisions.", icon=":material/undo:")


@safe_callback
def decide_duplicates(dataset_id: int, run_id: int, row_index: int, others: tuple[int, ...]) -> None:
    """Record the chosen decision on each of the row's near-duplicates, in one transaction."""
    decision = state[f"dup_decision_{row_index}"]
    n = get_store().decide_duplicates(dataset_id, others, decision, run_id=run_id, actor=actor())
    notify(
        f"{DUPLICATE_CHOICES[decision]}: recorded on {n} duplicate{'s' * (n != 1)} of row {row_index}. "
        "Undo takes them back one at a time.",
        icon=":material/content_copy:",
    )


# -- drawing ------------------------------------------------------------------------------------------------


def live_status(run_id: int, shown: int) -> None:
    """While scoring runs: a thin progress line; new rows redraw the page (unless an edit is being typed)."""
    with guard("the scoring progress"):
        progress = run_progress(get_store(), run_id)
        fraction, text = run_bar(
            progress.status, progress.rows_done, progress.rows_total, progress.rows_per_s, progress.eta_s
        )
        st.progress(fraction, text=f"Scoring in progress: {text[0].lower()}{text[1:]}")
        if (progress.rows_done != shown or progress.status != "running") and not state.get("review_editing"):
            st.rerun()


def filters(gamma: float, eta: float) -> dict:
    """The filter row above the queue, as ``ReviewQuery`` fields; the order is picked above the table itself."""
    c1, c2, c5, c3, c4 = st.columns([1.25, 1, 0.9, 1, 1.2], vertical_alignment="bottom")
    actions = c1.pills(
        "Automatic action",
        list(clear.ACTIONS),
        selection_mode="multi",
        format_func=ACTION_LABELS.get,
        key="review_actions",
        on_change=reset_page,
        persist_state="session",
        help=f"At the current thresholds γ = {gamma:.2f} (filter below) and η = {eta:.2f} (correct above).",
    )
    status = c2.selectbox(
        "Review status",
        list(STATUS_FILTERS),
        format_func=STATUS_FILTERS.get,
        key="review_status",
        on_change=reset_page,
        persist_state="session",
    )
    reason = c5.selectbox(
        "Reason",
        ["any", *REASONS],
        format_func=lambda r: "Any reason" if r == "any" else REASON_LABELS[r],
        key="review_reason_filter",
        on_change=reset_page,
        persist_state="session",
        help="Rows removed or kept for this reason.",
    )
    low, high = c3.slider(
        "Confidence", 0.0, 1.0, (0.0, 1.0), step=0.01, key="review_range", on_change=reset_page, persist_state="session"
    )
    search = c4.text_input(
        "Search",
        key="review_search",
        placeholder="Text in prompt or response",
        on_change=reset_page,
        persist_state="session",
        icon=":material/search:",
    )
    return {
        "action": actions or None,
        "status": None if status == "all" else status,
        "min_confidence": low if low > 0 else None,
        "max_confidence": high if high < 1 else None,
        "search": search.strip() or None,
        "reason": None if reason == "any" else reason,
    }


def bulk_popover(dataset_id: int, run_id: int, gamma: float, eta: float) -> None:
    with st.popover("Bulk accept", icon=":material/done_all:"):
        threshold = st.slider(
            "Accept proposals with correction confidence above", 0.0, 1.0, float(eta), step=0.01, key="bulk_threshold"
        )
        count = get_store().queue_total(bulk_accept_query(run_id, gamma, threshold))
        st.caption(f"{count:,} rows with a proposal above {threshold:.2f} have no decision yet.")
        st.button(
            f"Accept {count:,} proposals" + (f" as {md_plain(annotator())}" if annotator() else ""),
            type="primary",
            disabled=not count or not annotator() or not allowed(actor(), "bulk_accept"),
            on_click=accept_many,
            args=(dataset_id, run_id, gamma),
            help=None if annotator() else "Enter your name in the sidebar first.",
        )


def query_actions(dataset_id: int, query: ReviewQuery, total: int) -> None:
    """Act on every row the filters select (a dry-run count, one confirmation), and undo the last such group."""
    with st.container(horizontal=True, gap="small"):
        with st.popover(f"Apply to all {total:,} rows", icon=":material/select_all:", disabled=not total):
            decision = st.radio(
                "Decision for every row matching the filters",
                list(GROUP_ACTIONS),
                format_func=GROUP_ACTIONS.get,
                key="group_decision",
                horizontal=True,
            )
            # every decision but accept takes every row the filters select: the queue's own count, not a second one
            n = get_store().review_count(query, decision) if decision == "accept" else total
            st.caption(group_dry_run(decision, n, total))
            may = bool(annotator()) and allowed(actor(), "bulk_accept" if decision == "accept" else "bulk_decide")
            wording = group_wording(decision, n)
            confirmed = st.checkbox(
                f"Yes, {wording[0].lower()}{wording[1:]}", key="group_confirm", disabled=not (n and may)
            )
            st.button(
                wording,
                type="primary",
                disabled=not (n and may and confirmed),
                on_click=decide_all,
                args=(query, decision),
                help=None if annotator() else "Enter your name in the sidebar first.",
            )
        last = get_store().last_group(dataset_id)
        if last is not None:
            st.button(
                undo_group_label(last),
                icon=":material/undo:",
                disabled=not annotator() or not allowed(actor(), "bulk_decide"),
                on_click=undo_group,
                args=(int(last["group_id"]),),
                help="Give every row of the last query-wide action back the decision it had before.",
            )


def queue(page_df: pd.DataFrame, position: int) -> None:
    key = f"queue_{state.get('review_page', 1)}_{state.review_row}"
    st.dataframe(
        queue_table(page_df),
        key=key,
        on_select=lambda: select_row(key),
        selection_mode="single-row",
        selection_default={"selection": {"rows": [position]}},
        hide_index=True,
        height=min(460, 35 * (len(page_df) + 1) + 3),
        column_config={
            "Row": st.column_config.NumberColumn(width=50),
            "Confidence": st.column_config.NumberColumn("Conf.", format="%.3f", width=62),
            "Action": st.column_config.TextColumn(width=68),
            "Decision": st.column_config.TextColumn(width=120),
        },
    )


def row_header(row: pd.Series) -> None:
    """'Row 17', its automatic action and scores (or why it could not be scored), and who decided what, when."""
    action, error = row["action"], row.get("error")
    if isinstance(error, str):
        st.markdown(f"#### Row {int(row['row_index'])} &nbsp; :red-badge[Scoring {FAILED_LABEL.lower()}]")
        st.error("The model could not score this row. Starting the run again retries it.", icon=":material/error:")
        st.code(error, language=None, wrap_lines=True)  # verbatim: an exception's text, never Markdown
    else:
        st.markdown(
            f"#### Row {int(row['row_index'])} &nbsp; "
            f":{ACTION_COLORS[action]}-badge[Automatic: {ACTION_LABELS[action]}]"
        )
    scores = (
        f"Confidence <b>{format_score(row['confidence'])}</b> · "
        f"correction confidence <b>{format_score(row['correction_confidence'])}</b>"
    )
    if isinstance(row["decision"], str):  # HTML, not Markdown: the annotator's name is shown verbatim, never a link
        when = pd.Timestamp(row["decided_at"]).strftime("%Y-%m-%d %H:%M UTC")
        decided = f"<b>{DECISION_LABELS[row['decision']]}</b> by <b>{plain(row['annotator'])}</b>, {when}"
        if isinstance(row.get("reason"), str):
            decided += f" · reason <b>{plain(REASON_LABELS.get(row['reason'], row['reason']))}</b>"
        if isinstance(row.get("note"), str):
            decided += f" · note: “{plain(row['note'])}”"
        html_line(f'{scores} · <span class="clear-ok">✓ {decided}</span>', kind="line")
    else:
        html_line(f'{scores} · <span class="clear-muted">not reviewed yet</span>', kind="line")


def navigation(dataset_id: int) -> None:
    """Previous / next row of the queue and undo of the reviewer's last decision."""
    with st.container(horizontal=True, gap="small"):
        back, ahead = (-1, dataset_id), (+1, dataset_id)
        st.button("Prev", icon=":material/arrow_upward:", shortcut="P", on_click=go, args=back, help="Previous row")
        st.button("Next", icon=":material/arrow_downward:", shortcut="N", on_click=go, args=ahead, help="Next row")
        st.button(
            "Undo",
            icon=":material/history:",
            shortcut="U",
            disabled=not annotator() or not allowed(actor(), "undo_own"),
            on_click=undo,
            args=(dataset_id,),
            help="Undo your last decision.",
        )


def buttons(dataset_id: int, run_id: int, row: pd.Series) -> None:
    row_index = int(row["row_index"])
    has_proposal = isinstance(row["proposed_response"], str) and bool(row["proposed_response"].strip())
    named = bool(annotator())
    deciding, editing = named and allowed(actor(), "decide"), named and allowed(actor(), "edit")
    args = (dataset_id, run_id, row_index)
    with st.container(horizontal=True, gap="small"):
        st.button(
            "Accept correction",
            icon=":material/check:",
            type="primary",
            shortcut="A",
            disabled=not (deciding and has_proposal),
            on_click=decide,
            args=(*args, "accept"),
            help="Use the model's proposal." if has_proposal else "This row has no proposal.",
        )
        st.button(
            "Reject",
            icon=":material/undo:",
            shortcut="O",
            disabled=not deciding,
            on_click=decide,
            args=(*args, "reject"),
            help="Keep the original response.",
        )
        st.button(
            "Remove",
            icon=":material/delete:",
            shortcut="D",
            disabled=not deciding,
            on_click=decide,
            args=(*args, "remove"),
            help="Drop the row from the curated dataset.",
        )
        st.button(
            "Edit",
            icon=":material/edit:",
            shortcut="E",
            disabled=not editing,
            on_click=lambda: state.update(review_editing=row_index),
            help="Write the response yourself.",
        )
    reasons(deciding)
    if not named:
        st.caption(":orange[:material/badge:] Enter your name in the sidebar to record decisions.")


def reasons(deciding: bool) -> None:
    """The reason (keys 1-6, one each) and note that the next Remove or Reject records."""
    chosen = state.get("review_reason")
    with st.container(horizontal=True, gap="small", vertical_alignment="center"):
        st.caption("Reason for Remove / Reject:")
        for number, reason in enumerate(REASONS, start=1):
            st.button(
                REASON_LABELS[reason],
                key=f"review_reason_{reason}",
                type="primary" if reason == chosen else "secondary",
                shortcut=str(number),
                disabled=not deciding,
                on_click=pick_reason,
                args=(reason,),
                help=f"Record “{REASON_LABELS[reason].lower()}” with the next Remove or Reject (key {number}).",
            )
    st.text_input(
        "Note",
        key="review_note",
        placeholder="Optional note for Remove / Reject",
        label_visibility="collapsed",
        disabled=not deciding,
        max_chars=500,
    )


def editor(dataset_id: int, run_id: int, row: pd.Series) -> None:
    row_index = int(row["row_index"])
    start = next(
        text for text in (row["final_response"], row["proposed_response"], row["response"]) if isinstance(text, str)
    )
    key = f"edit_text_{row_index}"
    with st.container(border=True):
        st.text_area("Your response", value=start, key=key, height=180)
        with st.container(horizontal=True):
            st.button(
                "Save edit",
                type="primary",
                icon=":material/save:",
                on_click=decide,
                args=(dataset_id, run_id, row_index, "edit", key),
            )
            st.button("Cancel", on_click=lambda: state.update(review_editing=None))


def duplicate_table(others: pd.DataFrame, text: str, kind: str) -> pd.DataFrame:
    """The rows of a duplicate group for a table: row, similarity to the current row's text, confidence, current
    decision and the start of their text (a table shows it verbatim, never as Markdown)."""
    return pd.DataFrame(
        {
            "Row": others["row_index"].astype(int),
            "Similarity": dedupe.similarities(text, list(others[kind])),
            "Confidence": others["confidence"],
            "Decision": [DECISION_LABELS.get(d, "") if isinstance(d, str) else "" for d in others["decision"]],
            kind.capitalize(): [shorten(t, 120) for t in others[kind]],
        }
    )


def duplicates(dataset_id: int, run_id: int, row: pd.Series) -> None:
    """The row's near-duplicate responses (a look first, then one decision for all of them) and the rows that
    ask the same question (a list: their responses differ, so a decision does not carry over)."""
    row_index = int(row["row_index"])
    found = get_store().row_duplicates(dataset_id, row_index, run_id=run_id)  # both kinds in one read
    same, asked = found["response"], found["prompt"]
    config = {
        "Row": st.column_config.NumberColumn(width=50),
        "Similarity": st.column_config.NumberColumn(format="%.2f", width=70),
        "Confidence": st.column_config.NumberColumn("Conf.", format="%.3f", width=62),
    }
    if not same.empty:
        n = len(same)
        with st.expander(f"{n} near-duplicate response{'s' * (n != 1)}", icon=":material/content_copy:"):
            st.dataframe(duplicate_table(same, row["response"], "response"), hide_index=True, column_config=config)
            own = row["decision"] if row["decision"] in DUPLICATE_CHOICES else None
            choice = st.radio(
                "Decision for its duplicates",
                list(DUPLICATE_CHOICES),
                index=None if own is None else list(DUPLICATE_CHOICES).index(own),
                format_func=DUPLICATE_CHOICES.get,
                key=f"dup_decision_{row_index}",
                horizontal=True,
            )
            proposals = int(sum(isinstance(p, str) and bool(p.strip()) for p in same["proposed_response"]))
            if choice == "accept":
                st.caption(
                    f"Accept uses each duplicate's own proposal: {proposals} of {n} have one; the others are left "
                    "as they are."
                )
            usable = choice is not None and (choice != "accept" or proposals > 0)
            st.button(
                f"Apply this decision to its {n} duplicate{'s' * (n != 1)}",
                icon=":material/done_all:",
                disabled=not (usable and annotator() and allowed(actor(), "decide")),
                on_click=decide_duplicates,
                args=(dataset_id, run_id, row_index, tuple(int(i) for i in same["row_index"])),
                help=None if annotator() else "Enter your name in the sidebar first.",
            )
    if not asked.empty:
        n = len(asked)
        with st.expander(f"{n} other row{'s' * (n != 1)} ask the same question", icon=":material/quiz:"):
            st.dataframe(duplicate_table(asked, row["prompt"], "prompt"), hide_index=True, column_config=config)


def _utc_now() -> pd.Timestamp:
    return pd.Timestamp.now("UTC").tz_localize(None)  # the store's timestamps are naive UTC


def team_lines(dataset_id: int, row: pd.Series, others: list[str]) -> None:
    """Many annotators at once: who else has this row open, and who decided it before this reviewer."""
    row_index = int(row["row_index"])
    if others:
        names = ", ".join(f"<b>{plain(name)}</b>" for name in others)
        html_line(f"⚠ Also open: row {row_index} by {names}", kind="line")
    if annotator() and isinstance(row["decision"], str):
        for line in decided_before(get_store().row_decisions(dataset_id, row_index), annotator(), _utc_now()):
            html_line(plain(line), kind="caption")


def row_detail(dataset_id: int, run_id: int, row: pd.Series, others: list[str] | None = None) -> None:
    row_header(row)
    team_lines(dataset_id, row, others or [])
    buttons(dataset_id, run_id, row)
    if state.get("review_editing") == int(row["row_index"]):
        editor(dataset_id, run_id, row)
    tail, hidden = prompt_tail(row["prompt"])  # a long prompt's end, where its question is, without scrolling
    label = prompt_label(hidden, len(row["prompt"]))
    text_block(f"…{tail}" if hidden else row["prompt"], label=label, max_height="7.5rem")
    if hidden:
        with st.expander("Full prompt"):
            text_block(row["prompt"], max_height="30rem")
    proposal = row["proposed_response"]
    if row["decision"] == "edit" and isinstance(row["final_response"], str):
        diff_blocks(row["response"], row["final_response"], ("Original response", "Edited response"))
    elif isinstance(proposal, str) and proposal.strip():
        diff_blocks(row["response"], proposal, ("Original response", "Proposed by the model"))
    else:
        text_block(row["response"], label="Response")
        st.caption("No proposal for this row: the model proposes an answer only where it doubts the response.")
    duplicates(dataset_id, run_id, row)
    if isinstance(row.get("error"), str):
        return  # a failed row has no signals
    with st.expander("Signals behind the confidence"):
        names = [name for name in NUMERIC_SCORE_FIELDS if name in row.index]
        st.dataframe(
            pd.DataFrame(
                {
                    "Signal": names,
                    "Value": [format_score(row[name]) for name in names],
                    "Meaning": [SIGNAL_HELP.get(name, "") for name in names],
                }
            ),
            hide_index=True,
            column_config={"Value": st.column_config.TextColumn(width=70)},
        )


# -- the page -----------------------------------------------------------------------------------------------


def draw() -> None:
    """The whole page: header and progress, filters, the queue and the current row."""
    store = get_store()
    dataset = require_dataset(store)
    run = require_scores(store, dataset, counts=False)  # counted below only when the queue is empty
    dataset_id, run_id = dataset["dataset_id"], run["run_id"]
    gamma, eta = store.get_thresholds(dataset_id)
    scored = run_progress(store, run_id).rows_done if run["status"] == "running" else None

    head, done, bulk = st.columns([2.2, 2, 1], vertical_alignment="center")
    html_line(f"Review · {plain(dataset['name'])}", kind="heading", container=head)
    n_decided, n_rows = store.review_progress(run_id)
    store.warm_search(run_id)  # a large dataset's word index, built in the background before the first search
    done.progress(n_decided / n_rows if n_rows else 0.0, text=f"Reviewed {n_decided:,} of {n_rows:,} rows")
    # The lead's menus (Bulk accept; Apply to all and its undo) are not drawn for an annotator at all; were a click
    # to reach their callbacks anyway, the store would refuse it.
    may_bulk = allowed(actor(), "bulk_accept") or allowed(actor(), "bulk_decide")
    with bulk:
        if may_bulk:
            bulk_popover(dataset_id, run_id, gamma, eta)
        else:
            st.caption(":material/groups: Bulk actions are a lead's.")
    if run["status"] == "running":
        st.fragment(run_every=2)(live_status)(run_id, scored)

    chosen = filters(gamma, eta)
    overlap = store.review_settings(dataset_id)["overlap"]
    if overlap > 1 and annotator():  # blind review: filters, sorts and the queue read this reviewer's decisions only
        chosen["decided_by"] = annotator()
        if chosen["status"] == "undecided":  # rows still waiting for this reviewer
            chosen.update(status=None, reviewer=annotator(), overlap=overlap)
    left, right = st.columns([2, 3], gap="medium")
    sort = left.selectbox("Order", list(SORTS), key="review_sort", on_change=reset_page, persist_state="session")
    order_by, ascending = SORTS[sort]
    query = ReviewQuery(run_id, gamma, eta, **chosen, order_by=order_by, ascending=ascending)
    page_number = state.get("review_page", 1)
    page_df, total = store.review_queue(query, limit=PAGE_SIZE, offset=(page_number - 1) * PAGE_SIZE)
    state.review_pages = n_pages(total, PAGE_SIZE)
    if page_df.empty and page_number > 1:  # the queue shrank under the page we were on
        state.review_page = page_number = state.review_pages
        page_df, total = store.review_queue(query, limit=PAGE_SIZE, offset=(page_number - 1) * PAGE_SIZE)
    if may_bulk:
        with left:
            query_actions(dataset_id, query, total)

    if page_df.empty:
        run = store.get_run(run_id)  # with its counts
        scored = run["n_scored"] if scored is None else scored
        empty = "No rows are scored yet; they appear here as the run scores them." if scored == 0 else None
        failed = run.get("n_failed") or 0
        if failed and query.status != "failed":
            rows_word = "1 row" if failed == 1 else f"{failed:,} rows"
            empty = (empty or "No rows match these filters.") + (
                f" {rows_word} could not be scored: choose “{STATUS_FILTERS['failed']}” under Review status to see why."
            )
        st.info(empty or "No rows match these filters.", icon=":material/filter_alt_off:")
        st.stop()

    rows = [int(i) for i in page_df["row_index"]]
    if state.get("review_row") not in rows:  # the page picks the row: one nobody else has open
        state.review_row = rows[free_position(rows, state.get("review_pos", 0), busy(dataset_id, rows))]
    position = rows.index(state.review_row)
    state.review_rows, state.review_pos = rows, position
    # The row shown is leased to this reviewer (their other open row goes back); a lease ends on their decision or
    # expiry.
    opened = store.claim(dataset_id, state.review_row, actor=actor()) if annotator() else {"others": []}

    with left:
        queue(page_df, position)
        navigation(dataset_id)
        st.caption(f"{total:,} rows match · page {page_number} of {state.review_pages}")
        if state.review_pages > 1:
            st.pagination(
                state.review_pages, key="review_page", on_change=lambda: state.update(review_row=None, review_pos=0)
            )
    with right:
        row_detail(dataset_id, run_id, page_df.iloc[position], opened["others"])


@st.fragment
def page() -> None:
    """Review as one fragment: a decision, a move or a filter reruns this page only, not the app around it (the
    sidebar's dataset list and run progress: 70-130 ms of store calls per rerun at 1M rows). What the sidebar and
    navigation show does not change with them; a new dataset or page is a full run, which draws this anew."""
    if _session.users_file() is not None and _session.current_user() is None:
        st.rerun()  # signed out meanwhile (team mode): the whole app, which shows the sign-in page
    show_callback_error()  # a full run's app.py has shown it already; a fragment run shows it here
    show_toasts()
    with guard("the Review page"):
        draw()


page()
