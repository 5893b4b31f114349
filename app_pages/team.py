"""Team (leads only): who is on the team, and the activity log of who did what (``Store.audit_log``)."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from app_pages import _session, _team_review
from app_pages._components import actor, current_dataset, get_store, html_line, plain
from clear_core import permissions, workspace

SHOWN = 500  # the newest lines on the page; the download has them all

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
    table = shown.assign(detail=[json.dumps(d, ensure_ascii=False) for d in shown["detail"]])
    st.dataframe(
        table,
        hide_index=True,
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
    st.caption(f"{more}Decisions and undos name their reviewer; the role is recorded for other actions.")
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

_team_review.show(store, current_dataset(store))  # leases, overlap and agreement (issue 9: many annotators at once)
