"""Who is using the app: local mode (one person on this machine, a lead) or team mode (a user from the users file,
signed in with a password or through Streamlit's st.login). Streamlit glue around ``clear_core.accounts``, which
holds the rules.

Team mode keeps the sign-in in the browser session's server-side state (``st.session_state``): nothing about it is
in the page address or a cookie of ours, so a reload or a new tab signs in again (st.login's own cookie survives a
reload). Every run of the app re-reads the users file (cached by its modification time), so a removed user or a
changed role takes effect at their next click, and ``actor()`` refuses a signed-out or expired session in callbacks,
which run before the page draws.
"""

from __future__ import annotations

import importlib.util
import threading
import time
from pathlib import Path

import streamlit as st

from app_pages._components import db_path, get_store
from clear_core import accounts, permissions
from clear_core.errors import ClearError

SESSION_KEY = "_clear_session"
NOTE_KEY = "_signin_note"  # why the sign-in page is shown (an expired session, an unknown st.login account)
clock = time.time  # seconds since the epoch; tests put their own clock here
_cache: dict[Path, tuple[tuple[int, int], accounts.Users]] = {}
_cache_lock = threading.Lock()


class NotSignedIn(ClearError):
    """A team-mode action from a browser session that is not (or no longer) signed in."""


@st.cache_resource(show_spinner=False)
def backoff() -> accounts.Backoff:
    """The server's one count of failed sign-ins (per name and address)."""
    return accounts.Backoff()


def users_file() -> Path | None:
    """The users file in team mode, None in local mode (``accounts.team_mode``)."""
    return accounts.team_mode(db_path())


def team() -> accounts.Users | None:
    """Team mode's users (re-read when the file changes), or None in local mode."""
    path = users_file()
    if path is None:
        return None
    info = path.stat()
    stamp = (info.st_mtime_ns, info.st_size)
    with _cache_lock:
        cached = _cache.get(path)
    if cached is None or cached[0] != stamp:
        cached = (stamp, accounts.load_users(path))
        with _cache_lock:
            _cache[path] = cached
    return cached[1]


def oidc_configured() -> bool:
    """Whether Streamlit's st.login can be used: an ``[auth]`` section in .streamlit/secrets.toml and Authlib, which
    st.login needs (``pip install Authlib``; not in requirements.txt)."""
    try:
        configured = "auth" in st.secrets
    except Exception:  # no secrets file at all  # noqa: BLE001
        return False
    return configured and importlib.util.find_spec("authlib") is not None


def oidc_missing_authlib() -> bool:
    """``[auth]`` is configured but Authlib is not installed, so st.login cannot work yet."""
    try:
        configured = "auth" in st.secrets
    except Exception:  # noqa: BLE001
        return False
    return configured and importlib.util.find_spec("authlib") is None


def _address() -> str:
    try:
        address = st.context.ip_address
    except Exception:  # noqa: BLE001 - not served over a websocket
        address = None
    return address if isinstance(address, str) and address else "unknown"  # AppTest gives a stand-in object


def _start(user: accounts.User, via: str) -> None:
    now = clock()
    st.session_state[SESSION_KEY] = accounts.Session(user.name, now, now, via)
    get_store().record_audit(user.actor(), "sign_in", detail={"via": via, "address": _address()})


def sign_in(name: str, password: str) -> accounts.User:
    """Check NAME and PASSWORD (``accounts.authenticate``, slowed after repeated failures) and start a session."""
    users = team() or accounts.Users()
    user = accounts.authenticate(users, name, password, address=_address(), backoff=backoff(), now=clock())
    _start(user, "password")
    return user


def sign_out(note: str | None = None) -> None:
    """End this browser session's sign-in (and st.login's, when it was used)."""
    session = st.session_state.pop(SESSION_KEY, None)
    if note:
        st.session_state[NOTE_KEY] = note
    if session is None:
        return
    users = team()
    user = users.get(session.name) if users else None
    if user is not None:
        get_store().record_audit(user.actor(), "sign_out", detail={"why": note or "signed out"})
    if session.via == "oidc" and oidc_configured():
        st.logout()


def current_user() -> accounts.User | None:
    """Team mode: the signed-in user, with their role as the users file says now; None when nobody is signed in
    (an expired session or a removed user is signed out, with a note for the sign-in page)."""
    users = team()
    if users is None:
        return None
    session = st.session_state.get(SESSION_KEY)
    now = clock()
    if session is None:
        return _from_oidc(users)
    if problem := accounts.session_problem(session, accounts.SessionPolicy.from_env(), now):
        sign_out(problem)
        return None
    user = users.get(session.name)
    if user is None:
        sign_out("You are no longer on this team's users list. Ask a lead.")
        return None
    st.session_state[SESSION_KEY] = accounts.touch(session, now)
    return user


def _from_oidc(users: accounts.Users) -> accounts.User | None:
    """A user signed in through st.login whose e-mail is in the users file (their role comes from there)."""
    if not oidc_configured() or not st.user.is_logged_in:
        return None
    user = users.by_email(st.user.get("email"))
    if user is None:
        st.session_state[NOTE_KEY] = "Your account is not on this team's users list. Ask a lead to add your e-mail."
        return None
    _start(user, "oidc")
    return user


def typed_name() -> str:
    """Local mode: the reviewer's name from the sidebar ('' until entered)."""
    return (st.session_state.get("annotator") or "").strip()


def actor() -> permissions.Actor:
    """Who is acting: local mode's one user (a lead, named in the sidebar), or team mode's signed-in user; a team-mode
    session that is not signed in is refused (``NotSignedIn``)."""
    if users_file() is None:
        return permissions.local_actor(typed_name())
    user = current_user()
    if user is None:
        raise NotSignedIn("You are not signed in (or your session ended). Reload the page and sign in.")
    return user.actor()


def name() -> str:
    """The name recorded with this person's decisions: the typed name in local mode, the user's in team mode."""
    if users_file() is None:
        return typed_name()
    user = current_user()
    return user.name if user else ""


def listening_beyond_this_machine() -> bool:
    """Whether the server accepts connections from other machines (server.address unset or not a loopback one)."""
    address = st.get_option("server.address") or ""
    return address not in ("127.0.0.1", "localhost", "::1")
