"""Sign in (team mode): name and password from the users file, or the st.login provider when one is configured.

The only page there is until someone signs in. A wrong password and an unknown name get the same message, and
repeated failures are slowed (``clear_core.accounts``). The password is cleared from the server's memory at every
submit and is never part of the page address.
"""

from __future__ import annotations

import streamlit as st

from app_pages import _session
from clear_core.accounts import SignInRefused

REFUSED_KEY = "_signin_refused"


def submit() -> None:
    """The form's callback (before anything draws): check the name and password, then forget the password."""
    state = st.session_state
    name, password = state.get("signin_name") or "", state.get("signin_password") or ""
    state.signin_password = ""  # kept in the server's memory no longer than this check
    try:
        _session.sign_in(name, password)
    except SignInRefused as exc:
        state[REFUSED_KEY] = str(exc)


st.title("Sign in")
st.caption("This CLEAR Review server is shared by a team. Sign in with the name and password a lead gave you.")
if note := st.session_state.pop(_session.NOTE_KEY, None):
    st.info(note, icon=":material/info:")

with st.form("sign_in", enter_to_submit=True):
    st.text_input("Name", key="signin_name", autocomplete="username")
    st.text_input("Password", type="password", key="signin_password", autocomplete="current-password")
    st.form_submit_button("Sign in", type="primary", icon=":material/login:", on_click=submit)
if refused := st.session_state.pop(REFUSED_KEY, None):
    st.error(refused, icon=":material/block:")

if _session.oidc_missing_authlib():
    st.warning(
        ".streamlit/secrets.toml has an [auth] section, but st.login needs Authlib: pip install Authlib, then "
        "restart the app.",
        icon=":material/warning:",
    )
elif _session.oidc_configured():
    st.divider()
    st.button("Sign in with your organisation's account", icon=":material/badge:", on_click=st.login)
    st.caption("Your e-mail must be on the team's users list; a lead adds it with `users add NAME --email ...`.")
