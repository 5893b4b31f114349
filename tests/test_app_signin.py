"""Local mode and team mode in AppTest: the local-mode label, the sign-in page as the only page before sign-in, one
message for a wrong password or an unknown name, sessions that end, and every lead-only action refused to an
annotator on the server (a forged click on a disabled control is dropped by Streamlit; a control drawn for a lead
who is then made an annotator is refused by the callback and the store)."""

from __future__ import annotations

import json

import pytest
from argon2 import PasswordHasher

from app_pages import _session
from clear_core import accounts, workspace
from clear_core.store import Store

PASSWORDS = {"lee": "lee-password", "lena": "lena-password", "ann": "ann-password"}


@pytest.fixture
def team_db(app_db, monkeypatch):
    """app_db in team mode: lee and lena are leads, ann an annotator (cheap argon2 hashes, a fresh backoff)."""
    monkeypatch.setattr(accounts, "HASHER", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    monkeypatch.delenv(accounts.USERS_ENV, raising=False)
    _session.backoff.clear()
    path = app_db[0]
    write_team(path, lena="lead")
    return app_db


def write_team(db, lena: str) -> None:
    users = accounts.Users()
    for name, role in (("lee", "lead"), ("lena", lena), ("ann", "annotator")):
        users = accounts.add_user(users, name, role, PASSWORDS[name])
    accounts.save_users(accounts.users_path(db), users)


def sign_in(at, name: str, password: str | None = None):
    at.text_input(key="signin_name").input(name)
    at.text_input(key="signin_password").input(PASSWORDS.get(name, "") if password is None else password)
    return button(at, "Sign in").click().run()


def button(at, label: str):
    return next(b for b in at.button if b.label == label)


def popovers(at) -> list[str]:
    return [p.proto.popover.label for p in at.get("popover")]


def sidebar_lines(at) -> list[str]:
    return [h.value for h in at.sidebar.get("html")]


def audit(path) -> list[tuple[str, str]]:
    with Store(path) as store:
        log = store.audit_log().iloc[::-1]
    return list(zip(log["actor"], log["action"]))


def test_local_mode_is_labelled_and_asks_for_no_sign_in(app_db, app):
    at = app("app_pages/review.py", annotator="carol")
    assert not at.exception and not at.error
    assert any("Local mode: you are the only user" in line for line in sidebar_lines(at))
    assert at.sidebar.text_input(key="annotator").value == "carol"  # nothing else changes for a single user
    at.switch_page("app_pages/team.py").run()  # the local user is a lead: the activity log is theirs
    assert not at.exception and at.title[0].value == "Team"


def test_team_mode_shows_nothing_but_the_sign_in_page(team_db, app):
    at = app(annotator="lee")  # ?annotator= no longer says who you are
    assert not at.exception
    assert [t.value for t in at.title] == ["Sign in"]
    assert [w.label for w in at.text_input] == ["Name", "Password"]
    assert not at.sidebar.selectbox and not [w for w in at.text_input if w.key == "annotator"]
    for page in ("app_pages/review.py", "app_pages/export.py", "app_pages/team.py"):
        with pytest.raises(ValueError, match="Known pages: .*signin"):
            at.switch_page(page)


def test_a_wrong_password_and_an_unknown_name_get_one_message_and_failures_are_slowed(team_db, app, monkeypatch):
    monkeypatch.setattr(_session, "clock", lambda: 1_000_000.0)  # every try at the same instant
    at = app()
    for name, password in (("lee", "not-lee-password"), ("nobody", "lee-password")):
        sign_in(at, name, password)
        assert [e.value for e in at.error] == ["Wrong name or password."]
        assert at.text_input(key="signin_password").value == ""  # the form forgets what was typed
        assert [t.value for t in at.title] == ["Sign in"]
    sign_in(at, "lee", "still-wrong")
    sign_in(at, "lee", "wrong-again")  # lee's third failure from this address
    sign_in(at, "lee")  # the right password, but the next try within a second must wait
    assert [e.value for e in at.error] == ["Too many failed sign-ins. Wait 1 s, then try again."]
    assert [action for _, action in audit(team_db[0])] == ["import"]  # nobody signed in


def test_an_annotator_reviews_and_is_refused_every_lead_only_action(team_db, app):
    path, dataset_id, _ = team_db
    at = sign_in(app(), "ann")
    assert not at.exception and not at.error
    assert any("Signed in as <b>ann</b> · annotator" in line for line in sidebar_lines(at))
    with pytest.raises(ValueError, match="Known pages"):
        at.switch_page("app_pages/team.py")  # not in the navigation; the page refuses anyone but a lead too
    at.switch_page("app_pages/review.py").run()
    assert not popovers(at)  # Bulk accept and "Apply to all N rows" are a lead's: not drawn at all
    assert not [w for w in at.slider if w.key == "bulk_threshold"] and not at.checkbox
    assert [c.value for c in at.caption if "lead" in c.value] == [":material/groups: Bulk actions are a lead's."]
    button(at, "Reject").click().run()  # reviewing is an annotator's work
    with Store(path) as store:
        assert store.current_decisions(dataset_id)["annotator"].tolist() == ["ann"]
    at.switch_page("app_pages/data.py").run()
    assert [i.value for i in at.info] == ["ann (annotator) may not import datasets; ask a lead."]
    assert not at.get("file_uploader") and not [b for b in at.button if b.label == "Import"]
    at.switch_page("app_pages/export.py").run()
    assert [i.value for i in at.info] == ["ann (annotator) may not export the curated dataset; ask a lead."]
    assert not at.get("download_button")  # the curated set is never prepared for them
    at.switch_page("app_pages/run.py").run()
    assert button(at, "Start scoring").disabled
    at.switch_page("app_pages/thresholds.py").run()
    gamma = at.slider(key="th_gamma")
    assert gamma.disabled
    gamma.proto.disabled = False  # what a crafted websocket message can do and a browser cannot
    gamma.set_value(0.2).run()
    with Store(path) as store:
        assert store.get_thresholds(dataset_id) == (0.5, 0.7)  # Streamlit drops a change to a disabled control
        assert len(store.list_runs()) == 1
    assert ("ann", "sign_in") in audit(path)


def test_a_lead_made_annotator_is_refused_by_the_server_at_the_next_click(team_db, app):
    """Controls drawn for lena the lead; the users file then makes her an annotator: every lead-only callback and
    the store refuse her, and nothing changes."""
    path, dataset_id, run_id = team_db
    refusal = "lena (annotator) may not {}; ask a lead."

    def as_annotator_click(at, widget_action, what):
        write_team(path, lena="annotator")
        widget_action(at)
        assert [e.value for e in at.error] == [refusal.format(what)], what
        write_team(path, lena="lead")
        at.run()  # drawn for a lead again

    at = sign_in(app(), "lena")
    at.switch_page("app_pages/review.py").run()
    assert popovers(at) == ["Bulk accept", "Apply to all 12 rows"]  # a lead's menus, drawn for a lead
    at.slider(key="bulk_threshold").set_value(0.5).run()
    as_annotator_click(at, lambda a: button(a, "Accept 2 proposals as lena").click().run(), "accept proposals in bulk")
    at.checkbox(key="group_confirm").check().run()
    as_annotator_click(
        at, lambda a: button(a, "Remove 12 rows").click().run(), "remove or keep every row a filter selects at once"
    )
    at.switch_page("app_pages/thresholds.py").run()
    as_annotator_click(at, lambda a: a.slider(key="th_gamma").set_value(0.2).run(), "change the thresholds γ and η")
    at.switch_page("app_pages/run.py").run()
    as_annotator_click(at, lambda a: button(a, "Start scoring").click().run(), "start scoring runs")
    at.switch_page("app_pages/export.py").run()
    next(b for b in at.button if b.label.startswith("Build")).click().run()  # the file, built for the lead
    as_annotator_click(at, lambda a: a.get("download_button")[0].click().run(), "export the curated dataset")
    at.switch_page("app_pages/data.py").run()
    at.segmented_control(key="data_source").set_value("Use a sample").run()
    next(s for s in at.selectbox if s.label == "Sample file").select(workspace.DEMO_DATASET).run()
    as_annotator_click(at, lambda a: button(a, "Import").click().run(), "import datasets")
    with Store(path) as store:
        assert store.current_decisions(dataset_id).empty and store.decision_groups(dataset_id) == []
        assert store.get_thresholds(dataset_id) == (0.5, 0.7)
        assert len(store.list_runs()) == 1 and len(store.list_datasets()) == 1
        assert [a for _, a in audit(path)] == ["import", "sign_in"]


def test_a_lead_sees_the_team_and_the_activity_log(team_db, app):
    path, dataset_id, _ = team_db
    at = sign_in(app(), "lee")
    assert any("Signed in as <b>lee</b> · lead" in line for line in sidebar_lines(at))
    at.switch_page("app_pages/thresholds.py").run()
    at.slider(key="th_gamma").set_value(0.3).run()
    at.switch_page("app_pages/export.py").run()
    next(b for b in at.button if b.label.startswith("Build")).click().run()
    at.get("download_button")[0].click().run()
    at.switch_page("app_pages/team.py").run()
    assert not at.exception and not at.error
    people = at.dataframe[0].value
    assert people["Name"].tolist() == ["lee", "lena", "ann"] and people["Role"].tolist() == [
        "lead",
        "lead",
        "annotator",
    ]
    log = at.dataframe[1].value
    assert log["action"].tolist() == ["export", "set_thresholds", "import"]
    assert log["actor"].tolist() == ["lee", "lee", "root"]
    assert json.loads(log["detail"].iloc[0]) == {"file": "gsm8k_small.curated.json", "format": "json", "records": 11}
    at.toggle(key="team_all").set_value(True).run()
    assert at.dataframe[1].value["action"].tolist() == ["export", "set_thresholds", "sign_in", "import"]


def test_sessions_end_and_signing_out_returns_to_the_sign_in_page(team_db, app, monkeypatch):
    path = team_db[0]
    now = [1_000_000.0]
    monkeypatch.setattr(_session, "clock", lambda: now[0])
    monkeypatch.setenv("CLEAR_SESSION_IDLE_MINUTES", "30")
    at = sign_in(app(), "ann")
    now[0] += 29 * 60
    at.run()
    assert not at.title or at.title[0].value != "Sign in"
    now[0] += 30 * 60  # half an hour without a click
    at.run()
    assert [t.value for t in at.title] == ["Sign in"]
    assert [i.value for i in at.info] == ["Your session ended after 30 minutes without activity. Sign in again."]
    sign_in(at, "ann")
    at.sidebar.button(key="sign_out").click().run()
    assert [t.value for t in at.title] == ["Sign in"]
    sign_in(at, "lena")
    write_team(path, lena="lead")  # unchanged role: still signed in
    at.run()
    assert any("Signed in as <b>lena</b>" in line for line in sidebar_lines(at))
    users = accounts.remove_user(accounts.load_users(accounts.users_path(path)), "lena")
    accounts.save_users(accounts.users_path(path), users)
    at.run()
    assert [i.value for i in at.info] == ["You are no longer on this team's users list. Ask a lead."]
    actions = [entry for entry in audit(path) if entry[1] != "import"]
    assert actions == [
        ("ann", "sign_in"),
        ("ann", "sign_out"),
        ("ann", "sign_in"),
        ("ann", "sign_out"),
        ("lena", "sign_in"),
    ]


def test_an_st_login_account_is_mapped_to_its_users_file_entry_by_email(team_db, monkeypatch):
    """st.login (OIDC) as far as it can run offline: AppTest stands in for the provider's signed-in st.user, the
    users file gives the role. The provider round trip itself needs a real provider and is not tested."""
    from streamlit.testing.v1 import AppTest

    from tests.conftest import REPO

    path = team_db[0]
    users = accounts.add_user(
        accounts.load_users(accounts.users_path(path)), "carol", "lead", None, email="carol@x.org"
    )
    accounts.save_users(accounts.users_path(path), users)
    monkeypatch.setattr(_session, "oidc_configured", lambda: True)  # an [auth] section and Authlib
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    at.user = {"is_logged_in": True, "email": "mallory@x.org"}
    at.run()
    assert [t.value for t in at.title] == ["Sign in"]
    assert [i.value for i in at.info] == [
        "Your account is not on this team's users list. Ask a lead to add your e-mail."
    ]
    assert button(at, "Sign in with your organisation's account")
    at.user = {"is_logged_in": True, "email": "Carol@X.org"}
    at.run()
    assert any("Signed in as <b>carol</b> · lead" in line for line in sidebar_lines(at))
    with Store(path) as store:
        assert store.audit_log(limit=1)[["actor", "action"]].values.tolist() == [["carol", "sign_in"]]
        assert store.audit_log(limit=1)["detail"].iloc[0] == {"via": "oidc", "address": "unknown"}
