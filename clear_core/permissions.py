"""Who is acting, and what they may do: an ``Actor`` and the pure ``allowed(actor, action)`` over registered actions.

Every store write that records a person takes an ``Actor`` (who decided, undid or moved γ/η) and refuses what the
actor's role does not allow with ``NotAllowed``; the pages ask ``allowed`` to disable what is not allowed. Roles
(issue 9): an annotator reviews (decides, edits, undoes their own decisions); a lead also imports data, starts
and cancels runs, moves γ/η, bulk-accepts, decides on every row a filter selects (and undoes such a group),
exports, undoes anyone's decision and reads the activity log. In local mode the app's actor is the one local user, a
lead (``local_actor``); in team mode it is the signed-in user (``accounts``); the command line and Python code work
as the file's owner (``owner_actor``), a lead: whoever can write the database file can do anything to it anyway.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from typing import NamedTuple

from clear_core.errors import ClearError, InvalidInput

ROLES = ("annotator", "lead")


class Rule(NamedTuple):
    roles: frozenset[str]
    what: str  # completes "may not ..." in a refusal


_EVERYONE = frozenset(ROLES)
_LEADS = frozenset({"lead"})

# The registered actions: who may do each.
ACTIONS: dict[str, Rule] = {
    "decide": Rule(_EVERYONE, "record review decisions"),
    "edit": Rule(_EVERYONE, "write a response of their own"),
    "undo_own": Rule(_EVERYONE, "undo their own decisions"),
    "undo_any": Rule(_LEADS, "undo other people's decisions"),
    "import": Rule(_LEADS, "import datasets"),
    "start_run": Rule(_LEADS, "start scoring runs"),
    "cancel_run": Rule(_LEADS, "cancel scoring runs"),
    "set_thresholds": Rule(_LEADS, "change the thresholds γ and η"),
    "bulk_accept": Rule(_LEADS, "accept proposals in bulk"),
    "bulk_decide": Rule(_LEADS, "remove or keep every row a filter selects at once"),
    "export": Rule(_LEADS, "export the curated dataset"),
    "view_audit": Rule(_LEADS, "see the team's activity log"),
    "set_overlap": Rule(_LEADS, "change how many people review each row or how long a row stays theirs"),
}

LOCAL_ID = "local"  # the one user of local mode
OWNER_ID = "owner"  # the command line and Python code, working on the file directly


class NotAllowed(ClearError):
    """The actor's role does not allow this action."""


@dataclass(frozen=True)
class Actor:
    """A person acting: ``id`` identifies them, ``name`` is what the store records with their writes (the
    ``annotator`` of a decision, ``updated_by`` of thresholds), ``role`` is 'annotator' or 'lead'."""

    id: str
    name: str
    role: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise InvalidInput(f"Unknown role {self.role!r}; expected one of {', '.join(ROLES)}.")


def local_actor(name: str) -> Actor:
    """The one user of local mode: a lead, named as they typed it ('' until they do)."""
    return Actor(LOCAL_ID, name.strip(), "lead")


def owner_actor() -> Actor:
    """The owner of the database file working directly (the command line, Python code): a lead named after the
    system user."""
    try:
        name = getpass.getuser()
    except (OSError, KeyError):  # no login name in this environment
        name = "owner"
    return Actor(OWNER_ID, name or "owner", "lead")


def allowed(actor: Actor, action: str) -> bool:
    """Whether ``actor`` may do ``action`` (one of ``ACTIONS``; any other name is a bug and raises ValueError)."""
    if action not in ACTIONS:
        raise ValueError(f"Unknown action {action!r}; register it in permissions.ACTIONS.")
    return actor.role in ACTIONS[action].roles


def refusal(actor: Actor, action: str) -> str:
    """What ``require`` says when ``actor`` may not do ``action``, e.g. for a page that shows it instead."""
    return f"{actor.name or actor.id} ({actor.role}) may not {ACTIONS[action].what}; ask a lead."


def require(actor: Actor, action: str) -> None:
    """Raise ``NotAllowed`` unless ``actor`` may do ``action``."""
    if not allowed(actor, action):
        raise NotAllowed(refusal(actor, action))
