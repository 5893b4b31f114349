"""The Team page's "Reviewing together" section (issue 9): how the dataset is shared out (overlap, lease length),
which rows are open right now and by whom, and how much the reviewers agree, with each other (Cohen's κ per pair,
Fleiss' κ) and with the automatic action, with each person's count and speed. The numbers come from
``clear_core.agreement``; this module only reads the store and draws."""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from app_pages._components import actor, get_store, html_line, safe_callback
from clear_core import agreement, clear
from clear_core.permissions import allowed
from clear_core.store import MAX_OVERLAP, Store
from clear_core.ui_state import format_duration

state = st.session_state


@safe_callback
def save_settings(dataset_id: int) -> None:
    get_store().set_review_settings(
        dataset_id, overlap=int(state.team_overlap), lease_seconds=int(state.team_lease_min * 60), actor=actor()
    )
    st.toast("Saved: the queue follows the new settings at each reviewer's next row.", icon=":material/check:")


def settings(store: Store, dataset_id: int) -> None:
    current = store.review_settings(dataset_id)
    may = allowed(actor(), "set_overlap")
    with st.container(horizontal=True, vertical_alignment="bottom", gap="small"):
        st.number_input(
            "People per row (overlap)",
            min_value=1,
            max_value=MAX_OVERLAP,
            value=int(current["overlap"]),
            key="team_overlap",
            disabled=not may,
            help="1: each row is reviewed once. 2 or more: each row stays in the others' queues until that many "
            "different people decided it, for agreement studies.",
        )
        st.number_input(
            "A row stays someone's for (minutes)",
            min_value=1,
            max_value=240,
            value=max(1, round(current["lease_seconds"] / 60)),
            key="team_lease_min",
            disabled=not may,
            help="A row opened in Review is held for that person until they decide it, move on, or this time passes.",
        )
        st.button("Save", key="team_save", disabled=not may, on_click=save_settings, args=(dataset_id,))


def open_rows(store: Store, dataset_id: int) -> None:
    leases = store.active_leases(dataset_id)
    if leases.empty:
        st.caption("Nobody has a row open right now.")
        return
    now = pd.Timestamp.now("UTC").tz_localize(None)
    st.dataframe(
        pd.DataFrame(
            {
                "Row": leases["row_index"].astype(int),
                "Open by": leases["actor_name"],
                "For": [format_duration((now - pd.Timestamp(t)).total_seconds()) for t in leases["claimed_at"]],
                "Free again in": [
                    format_duration((pd.Timestamp(t) - now).total_seconds()) for t in leases["expires_at"]
                ],
            }
        ),
        hide_index=True,
    )


def _number(value: object, digits: int = 2) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def agreement_tables(store: Store, dataset_id: int, run: dict | None) -> None:
    decided = store.annotator_decisions(dataset_id)
    decided = decided[decided["group_id"].isna()]  # a query-wide action is nobody's judgement of each row
    actions: dict[int, str] = {}
    if run is not None:
        gamma, eta = store.get_thresholds(dataset_id)
        scores = store.confidence_values(run["run_id"])
        chosen = clear.decide_many(scores["confidence"], scores["correction_confidence"], gamma, eta)
        actions = dict(zip(scores["row_index"].astype(int), chosen, strict=True))
    summary = agreement.team_summary(decided, actions)
    people = summary["annotators"]
    if people.empty:
        st.caption("Nobody has decided a row yet.")
        return
    st.dataframe(
        pd.DataFrame(
            {
                "Annotator": people["annotator"],
                "Rows decided": people["n_rows"].astype(int),
                "Also decided by others": people["n_shared"].astype(int),
                "Seconds per row (median)": [_number(v, 0) for v in people["median_seconds"]],
                "Agrees with the automatic action": [
                    "—" if math.isnan(v) else f"{v:.0%}" for v in people["agreement"].astype(float)
                ],
                "κ with the automatic action": [_number(v) for v in people["kappa"].astype(float)],
            }
        ),
        hide_index=True,
    )
    pairs = summary["pairs"]
    if pairs.empty:
        st.caption("No row was decided by two people yet: raise the overlap above to 2 or more for an agreement study.")
        return
    st.dataframe(
        pd.DataFrame(
            {
                "Annotator": pairs["annotator_a"],
                "and": pairs["annotator_b"],
                "Rows both decided": pairs["n_rows"].astype(int),
                "Same decision": [f"{v:.0%}" for v in pairs["agreement"]],
                "Cohen's κ": [_number(v) for v in pairs["kappa"]],
            }
        ),
        hide_index=True,
    )
    html_line(
        f"Fleiss' κ over the {summary['fleiss_rows']:,} rows decided by two or more people: "
        f"<b>{_number(summary['fleiss'])}</b> (1 = full agreement, 0 = what chance gives; — when undefined).",
        kind="line",
    )


def show(store: Store, dataset: dict | None) -> None:
    """The section, for the current dataset (nothing to show without one)."""
    st.subheader("Reviewing together")
    if dataset is None:
        st.caption("Import a dataset to share its review out.")
        return
    dataset_id = int(dataset["dataset_id"])
    st.caption(
        "Review hands each person a row nobody else has open; decisions are all kept, the latest one counts. "
        "Decisions are compared by what they do to the row: remove = filter, accept or edit = correct, "
        "keep original = keep."
    )
    settings(store, dataset_id)
    st.markdown("**Open right now**")
    open_rows(store, dataset_id)
    st.markdown("**Who decided what, and how much they agree**")
    agreement_tables(store, dataset_id, store.latest_run(dataset_id))
