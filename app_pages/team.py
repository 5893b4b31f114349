"""Team (leads only): who is on the team, the activity log of who did what (``Store.audit_log``), and undoing anyone's
decision on a row (``Store.undo_decision``; the store refuses it to an annotator too)."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from app_pages import _session, _team_review
from app_pages._components import actor, current_dataset, get_store, html_line, plain, safe_callback
from clear_core import permissions, workspace
from clear_core.ui_state import ago, decision_label

SHOWN = 500  # the newest lines on the page; the download has them all


@safe_callback
def undo_decision(decision_id: int) -> None:
    undone = get_store().undo_decision(decision_id, actor=actor())
    st.toast(
        f"Undid {undone['annotator']}'s “{decision_label(undone['decision'])}” on row {undone['row_index']}: the row "
        "is back to the decision it had before.",
        icon=":material/undo:",
    )


def undo_section(dataset_id: int, n_rows: int) -> None:
    """Pick a row, see every person's decision on it that stands, undo any of them (a lead's right)."""
    st.subheader("Undo a decision")
    row_index = st.number_input(
        "Row",
        min_value=0,
        max_value=max(n_rows - 1, 0),
        value=None,
        step=1,
        key="team_undo_row",
        placeholder="Row number, as in Review and the activity above",
    )
    if row_index is None:
        return
    decided = store.row_decisions(dataset_id, int(row_index))
    if decided.empty:
        st.caption(f"Nobody's decision on row {int(row_index)} stands.")
        return
    now = pd.Timestamp.now("UTC").tz_localize(None)
    may = permissions.allowed(actor(), "undo_any")
    for line in decided.itertuples():
        with st.container(horizontal=True, vertical_alignment="center", gap="small"):
            html_line(
                f"<b>{plain(decision_label(line.decision, line.reason))}</b> by <b>{plain(line.annotator)}</b>, "
                f"{ago((now - pd.Timestamp(line.decided_at)).total_seconds())}",
                kind="line",
            )
            if pd.isna(line.group_id):
                st.button(
                    "Undo",
                    key=f"team_undo_{line.decision_id}",
                    icon=":material/undo:",
                    disabled=not may,
                    on_click=undo_decision,
                    args=(int(line.decision_id),),
                )
            else:
                st.caption("part of a query-wide action: undo it on Review")


permissions.require(actor(), "view_audit")  # the navigation shows this page to leads only; refuse anyone else too
store = get_store()
st.title("Team")
path = _session.users_file()
users = _session.team()
if users is None:
    html_line(
        "Local mode: you are the only user, a lead. Add users with <code>python -m clear_core users add NAME --role "
        "annotator|lead</code> and restart to work as a team (README: “Teams: local mode and team mode”)."
    )
else:
    html_line(
        f"Team mode: people sign in as listed in <code>{plain(path)}</code> (change it with "
        "<code>python -m clear_core users add|remove</code>; changes apply at each person's next click)."
    )
    st.dataframe(
        pd.DataFrame(
            {
                "Name": [u.name for u in users.users],
                "Role": [u.role for u in users.users],
                "Signs in with": [
                    ", ".join(["password"] * bool(u.password_hash) + [f"st.login ({u.email})"] * bool(u.email))
                    for u in users.users
                ],
            }
        ),
        hide_index=True,
    )

st.subheader("Activity")
dataset = current_dataset(store)
everything = st.toggle("All datasets, and sign-ins", value=dataset is None, disabled=dataset is None, key="team_all")
dataset_id = None if everything or dataset is None else dataset["dataset_id"]
log = store.audit_log(dataset_id, limit=SHOWN)
if log.empty:
    st.caption("Nothing recorded yet.")
else:
    people = sorted({str(a) for a in log["actor"]})
    who = st.multiselect("People", people, key="team_people", placeholder="Everyone")
    shown = log[log["actor"].isin(who)] if who else log
    # Decisions and query-wide actions record no role: the person's role in the users file stands in for it.
    roles = {u.name: u.role for u in users.users} if users is not None else {}
    table = shown.assign(
        detail=[json.dumps(d, ensure_ascii=False) for d in shown["detail"]],
        role=[r if isinstance(r, str) else roles.get(str(a), "") for r, a in zip(shown["role"], shown["actor"])],
    )
    st.dataframe(
        table,
        hide_index=True,
        placeholder="",  # no dataset, run or row (a sign-in, an import, γ/η): a blank cell, not Streamlit's "None"
        column_config={
            "acted_at": st.column_config.DatetimeColumn("When (UTC)", format="YYYY-MM-DD HH:mm:ss"),
            "actor": "Who",
            "role": "Role",
            "action": "Action",
            "dataset_id": st.column_config.NumberColumn("Dataset", width="small"),
            "run_id": st.column_config.NumberColumn("Run", width="small"),
            "row_index": st.column_config.NumberColumn("Row", width="small"),
            "detail": "Detail",
        },
    )
    more = f"The newest {SHOWN:,} lines are shown. " if len(log) == SHOWN else ""
    st.caption(
        f"{more}Each line names who acted. The role is the one recorded with the action; decisions and undos record "
        "none, so theirs is the person's role in the users file now (blank in local mode or when they left)."
    )
    if dataset_id is not None:
        st.download_button(
            "Download this dataset's activity log (JSON Lines)",
            data=lambda: "".join(
                json.dumps(r, ensure_ascii=False, default=str) + "\n"
                for r in workspace.audit_records(store, dataset_id)
            ),
            file_name=f"dataset-{dataset_id}.audit.jsonl",
            mime="application/jsonl",
            icon=":material/download:",
            on_click="ignore",
        )

if dataset is not None:
    undo_section(int(dataset["dataset_id"]), int(dataset["n_rows"]))
_team_review.show(store, current_dataset(store))  # leases, overlap and agreement (issue 9: many annotators at once)
