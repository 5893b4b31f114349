"""clear_core.permissions: who may do what (pure: no database, no Streamlit)."""

from __future__ import annotations

import pytest

from clear_core.errors import ClearError, InvalidInput
from clear_core.permissions import ACTIONS, ROLES, Actor, NotAllowed, allowed, local_actor, owner_actor, require

ANNOTATOR = Actor("u1", "ann", "annotator")
LEAD = Actor("u2", "lee", "lead")

# Issue 9: annotators review (decide, edit, undo their own decisions); leads may do everything.
EXPECTED = {
    "decide": (True, True),
    "edit": (True, True),
    "undo_own": (True, True),
    "undo_any": (False, True),
    "import": (False, True),
    "start_run": (False, True),
    "cancel_run": (False, True),
    "set_thresholds": (False, True),
    "bulk_accept": (False, True),
    "bulk_decide": (False, True),
    "export": (False, True),
    "view_audit": (False, True),
    "set_overlap": (False, True),
}


def test_every_registered_action_is_in_the_table():
    assert set(ACTIONS) == set(EXPECTED) and ROLES == ("annotator", "lead")


@pytest.mark.parametrize(("action", "expected"), EXPECTED.items())
def test_allowed(action, expected):
    assert (allowed(ANNOTATOR, action), allowed(LEAD, action)) == expected


@pytest.mark.parametrize("action", [a for a, (for_annotator, _) in EXPECTED.items() if not for_annotator])
def test_require_refuses_with_a_message_for_the_user(action):
    with pytest.raises(NotAllowed, match=rf"^ann \(annotator\) may not {ACTIONS[action].what}; ask a lead\.$"):
        require(ANNOTATOR, action)
    require(LEAD, action)
    assert issubclass(NotAllowed, ClearError)


def test_an_unregistered_action_is_a_bug_and_a_role_must_be_known():
    with pytest.raises(ValueError, match="Unknown action 'delete_everything'"):
        allowed(LEAD, "delete_everything")
    with pytest.raises(InvalidInput, match="Unknown role 'admin'"):
        Actor("u3", "root", "admin")


def test_local_mode_is_one_lead_named_as_typed():
    assert local_actor("  alice ") == Actor("local", "alice", "lead")
    assert all(allowed(local_actor(""), action) for action in ACTIONS)


def test_the_command_line_works_as_the_files_owner_a_lead(monkeypatch):
    monkeypatch.setenv("LOGNAME", "dana")
    owner = owner_actor()
    assert owner == Actor("owner", "dana", "lead") and all(allowed(owner, action) for action in ACTIONS)
