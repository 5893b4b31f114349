"""clear_core.accounts and `python -m clear_core users`: the users file, argon2 hashes, sign-in with backoff, session
expiry (an injected clock), and the audit log the store keeps of who did what."""

from __future__ import annotations

import json
import stat

import pytest
from argon2 import PasswordHasher
from click.testing import CliRunner

from clear_core import accounts, runs, workspace
from clear_core.cli import main
from clear_core.permissions import Actor, NotAllowed
from clear_core.store import ReviewQuery, Store

LEAD = Actor("lee", "lee", "lead")
ANNOTATOR = Actor("ann", "ann", "annotator")


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch):
    """argon2id with the smallest cost: the same code path, a millisecond a hash instead of half a second."""
    monkeypatch.setattr(accounts, "HASHER", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    monkeypatch.delenv(accounts.USERS_ENV, raising=False)


def team(*entries: tuple[str, str, str | None]) -> accounts.Users:
    users = accounts.Users()
    for name, role, password in entries:
        users = accounts.add_user(users, name, role, password, email=None if password else f"{name}@example.org")
    return users


# -- hashing and the users file ---------------------------------------------------------------------------------


def test_passwords_are_stored_as_argon2id_hashes_that_verify(tmp_path):
    path = tmp_path / "clear.users.json"
    accounts.save_users(path, team(("alice", "lead", "correct horse"), ("bob", "annotator", "battery staple")))
    text = path.read_text(encoding="utf-8")
    assert "correct horse" not in text and "battery staple" not in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    users = accounts.load_users(path)
    alice = users.get("ALICE")  # names match ignoring case
    assert alice.role == "lead" and alice.password_hash.startswith("$argon2id$")
    assert accounts.verify_password(alice.password_hash, "correct horse")
    assert not accounts.verify_password(alice.password_hash, "correct horsE")
    assert not accounts.verify_password(None, "") and not accounts.verify_password("not a hash", "x")
    assert [p.name for p in tmp_path.iterdir()] == ["clear.users.json"]  # no temporary file left behind


def test_users_file_location_and_team_mode(tmp_path, monkeypatch):
    db = tmp_path / "data" / "clear-review.duckdb"
    assert accounts.users_path(db) == tmp_path / "data" / "clear-review.users.json"
    assert accounts.team_mode(db) is None  # no file: local mode
    accounts.save_users(accounts.users_path(db), team(("alice", "lead", "correct horse")))
    assert accounts.team_mode(db) == accounts.users_path(db)
    elsewhere = tmp_path / "team.json"
    monkeypatch.setenv(accounts.USERS_ENV, str(elsewhere))
    with pytest.raises(accounts.AccountsError, match=r"CLEAR_USERS names .*team\.json, which does not exist"):
        accounts.team_mode(db)  # never falls back to local mode when a file was asked for


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"format": "clear-review-users",\n "users": [}', r"users\.json, line 2, column 12: not valid JSON"),
        ('{"users": []}', r"is not a CLEAR Review users file"),
        ('{"format": "clear-review-users", "users": [{"name": "x y", "role": "lead"}]}', r"user 1 is not valid"),
        ('{"format": "clear-review-users", "users": [{"name": "x", "role": "admin"}]}', r"Unknown role 'admin'"),
    ],
)
def test_a_broken_users_file_says_where(tmp_path, content, message):
    path = tmp_path / "users.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(accounts.AccountsError, match=message):
        accounts.load_users(path)


def test_adding_and_removing_users_keeps_a_lead():
    users = team(("alice", "lead", "correct horse"))
    with pytest.raises(accounts.AccountsError, match="already a user 'alice'"):
        accounts.add_user(users, "Alice", "annotator", "another password")
    with pytest.raises(accounts.AccountsError, match="too short"):
        accounts.add_user(users, "bob", "annotator", "short")
    with pytest.raises(accounts.AccountsError, match="needs a password, or an --email"):
        accounts.add_user(users, "bob", "annotator", None)
    with pytest.raises(accounts.AccountsError, match="only lead"):
        accounts.add_user(users, "alice", "annotator", "correct horse", replace=True)
    with pytest.raises(accounts.AccountsError, match="only lead"):
        accounts.remove_user(users, "alice")
    users = accounts.add_user(users, "carol", "lead", None, email="Carol@Example.org")
    assert users.by_email("carol@example.org").name == "carol" and users.get("carol").password_hash is None
    assert [u.name for u in accounts.remove_user(users, "ALICE").users] == ["carol"]
    with pytest.raises(accounts.AccountsError, match="no user 'dave'"):
        accounts.remove_user(users, "dave")


# -- sign-in and backoff -----------------------------------------------------------------------------------------


def test_a_wrong_password_and_an_unknown_name_get_the_same_message():
    users = team(("alice", "lead", "correct horse"), ("carol", "lead", None))
    backoff = accounts.Backoff()
    kwargs = {"address": "10.0.0.1", "backoff": backoff, "now": 0.0}
    assert accounts.authenticate(users, " Alice ", "correct horse", **kwargs).name == "alice"
    messages = set()
    for name, password in (("alice", "wrong horse"), ("mallory", "correct horse"), ("carol", ""), ("", "")):
        with pytest.raises(accounts.SignInRefused) as refused:
            accounts.authenticate(users, name, password, **kwargs)
        messages.add(str(refused.value))
    assert messages == {"Wrong name or password."}  # an OIDC-only user has no password to guess either


def test_repeated_failures_are_slowed_per_name_and_address():
    users = team(("alice", "lead", "correct horse"))
    backoff = accounts.Backoff(free_failures=3, base_s=1.0, max_s=8.0)

    def sign_in(password, now, address="10.0.0.1"):
        return accounts.authenticate(users, "alice", password, address=address, backoff=backoff, now=now)

    for _ in range(3):
        with pytest.raises(accounts.SignInRefused, match="Wrong name or password"):
            sign_in("guess", now=100.0)
    # the fourth try must wait 1 s, even with the right password
    with pytest.raises(accounts.SignInRefused, match=r"Too many failed sign-ins\. Wait 1 s"):
        sign_in("correct horse", now=100.5)
    assert sign_in("correct horse", now=100.5, address="10.0.0.2").name == "alice"  # another address is not slowed
    with pytest.raises(accounts.SignInRefused, match="Wrong name or password"):
        sign_in("guess", now=101.0)
    assert backoff.wait_s(("alice", "10.0.0.1"), now=101.0) == 2.0  # doubled
    for now in (103.0, 107.0, 115.0):
        with pytest.raises(accounts.SignInRefused, match="Wrong name or password"):
            sign_in("guess", now=now)
    assert backoff.wait_s(("alice", "10.0.0.1"), now=115.0) == 8.0  # capped at max_s
    assert sign_in("correct horse", now=123.0).name == "alice"
    assert backoff.wait_s(("alice", "10.0.0.1"), now=123.0) == 0.0  # a success clears the count


# -- sessions ------------------------------------------------------------------------------------------------------


def test_sessions_expire_when_idle_and_in_all(monkeypatch):
    policy = accounts.SessionPolicy(idle_s=600, max_s=3600)
    session = accounts.Session("alice", signed_in_at=1000.0, last_seen_at=1000.0)
    assert accounts.session_problem(session, policy, now=1599.0) is None
    assert "10 minutes without activity" in accounts.session_problem(session, policy, now=1600.0)
    for now in range(1500, 4500, 500):  # active every few minutes: still ends an hour after signing in
        session = accounts.touch(session, float(now))
    assert accounts.session_problem(session, policy, now=4600.0) == (
        "Your session ended 1 h after you signed in. Sign in again."
    )
    monkeypatch.setenv("CLEAR_SESSION_IDLE_MINUTES", "30")
    monkeypatch.setenv("CLEAR_SESSION_HOURS", "8")
    assert accounts.SessionPolicy.from_env() == accounts.SessionPolicy(idle_s=1800, max_s=8 * 3600)
    monkeypatch.setenv("CLEAR_SESSION_HOURS", "eight")
    with pytest.raises(accounts.AccountsError, match="must be numbers"):
        accounts.SessionPolicy.from_env()


# -- the command line ------------------------------------------------------------------------------------------


def test_users_add_list_remove_from_the_command_line(tmp_path):
    runner = CliRunner()
    db = tmp_path / "clear.duckdb"
    users_file = tmp_path / "clear.users.json"
    added = runner.invoke(main, ["users", "add", "alice", "--role", "lead", "--db", str(db)], input="s3cret-pw\n" * 2)
    assert added.exit_code == 0, added.output
    assert f"Added alice (lead) in {users_file}. Team mode is on" in added.output
    assert "s3cret-pw" not in added.output  # the prompt hides what is typed
    mismatch = runner.invoke(
        main, ["users", "add", "bob", "--role", "annotator", "--db", str(db)], input="one-password\nanother-one\n" * 3
    )
    assert mismatch.exit_code != 0 and accounts.load_users(users_file).get("bob") is None
    scripted = runner.invoke(
        main,
        ["users", "add", "bob", "--role", "annotator", "--users", str(users_file), "--password-stdin"],
        input="bobs-password\n",
    )
    assert scripted.exit_code == 0, scripted.output
    oidc = runner.invoke(
        main, ["users", "add", "carol", "--role", "lead", "--no-password", "--email", "carol@example.org", "--db", db]
    )
    assert oidc.exit_code == 0, oidc.output
    users = accounts.load_users(users_file)
    assert accounts.verify_password(users.get("alice").password_hash, "s3cret-pw")
    assert accounts.verify_password(users.get("bob").password_hash, "bobs-password")
    listed = runner.invoke(main, ["users", "list", "--users", str(users_file)])
    assert listed.exit_code == 0
    lines = listed.output.splitlines()
    assert lines[0] == f"{users_file}:"
    assert lines[1].startswith("  alice  lead  (password; added ")
    assert lines[2].startswith("  bob  annotator  (password; added ")
    assert lines[3].startswith("  carol  lead  (st.login as carol@example.org; added ")
    assert "argon2" not in listed.output
    again = runner.invoke(
        main, ["users", "add", "bob", "--role", "lead", "--db", db, "--password-stdin"], input="x" * 9
    )
    assert again.exit_code == 1 and "already a user 'bob'; pass --replace" in again.output
    removed = runner.invoke(main, ["users", "remove", "bob", "--db", str(db)])
    assert removed.exit_code == 0 and [u.name for u in accounts.load_users(users_file).users] == ["alice", "carol"]
    missing = runner.invoke(main, ["users", "remove", "bob", "--db", str(db)])
    assert missing.exit_code == 1 and "There is no user 'bob'" in missing.output
    empty = runner.invoke(main, ["users", "list", "--users", str(tmp_path / "none.json")])
    assert "the app runs in local mode" in empty.output


# -- the store refuses an annotator's lead-only actions and keeps an audit log ----------------------------------------


def test_the_store_refuses_every_lead_only_action_to_an_annotator(tmp_path, gsm8k_file):
    from clear_core.data import load_dataset

    with Store(tmp_path / "clear.duckdb") as store:
        with pytest.raises(NotAllowed, match=r"ann \(annotator\) may not import datasets"):
            store.add_dataset(load_dataset(gsm8k_file), actor=ANNOTATOR)
        with pytest.raises(NotAllowed, match="may not import datasets"):
            workspace.import_file(store, gsm8k_file, actor=ANNOTATOR)
        assert store.list_datasets().empty
        dataset_id = workspace.import_file(store, gsm8k_file, actor=LEAD)
        with pytest.raises(NotAllowed, match="may not start scoring runs"):
            store.create_run(dataset_id, "synthetic", {}, actor=ANNOTATOR)
        with pytest.raises(NotAllowed, match="may not start scoring runs"):
            runs.start_run(store, tmp_path / "clear.duckdb", dataset_id, actor=ANNOTATOR)
        assert store.list_runs().empty
        run_id = store.create_run(dataset_id, "synthetic", {}, actor=LEAD)
        with pytest.raises(NotAllowed, match="may not cancel scoring runs"):
            runs.cancel(store, run_id, actor=ANNOTATOR)
        with pytest.raises(NotAllowed, match="may not change the thresholds"):
            store.set_thresholds(dataset_id, 0.3, 0.9, actor=ANNOTATOR)
        query = ReviewQuery(run_id=run_id, gamma=0.5, eta=0.7)
        with pytest.raises(NotAllowed, match="may not accept proposals in bulk"):
            store.accept_proposals(query, actor=ANNOTATOR)
        with pytest.raises(NotAllowed, match="may not remove or keep every row"):
            store.decide_query(query, "remove", actor=ANNOTATOR)
        with pytest.raises(NotAllowed, match="may not export the curated dataset"):
            store.record_audit(ANNOTATOR, "export", dataset_id=dataset_id)
        store.record_decision(dataset_id, 0, "remove", run_id=run_id, actor=LEAD)
        with pytest.raises(NotAllowed, match="may not undo other people's decisions"):
            store.undo_last_decision(dataset_id, ANNOTATOR, of_anyone=True)
        assert store.undo_last_decision(dataset_id, ANNOTATOR) is None  # their own: they have none
        store.record_decision(dataset_id, 1, "reject", run_id=run_id, actor=ANNOTATOR)  # reviewing is theirs
        assert store.undo_last_decision(dataset_id, ANNOTATOR)["row_index"] == 1
        assert store.get_thresholds(dataset_id) == (0.5, 0.7)
        assert list(store.current_decisions(dataset_id)["row_index"]) == [0]


def test_the_audit_log_names_who_did_what_and_export_writes_it(tmp_path, gsm8k_file, monkeypatch):
    monkeypatch.setenv("LOGNAME", "root-on-the-cli")
    db = tmp_path / "clear.duckdb"
    with Store(db) as store:
        dataset_id = workspace.import_file(store, gsm8k_file)  # the command line: the system user
        run_id = store.create_run(dataset_id, "synthetic", {"samples": 0}, actor=LEAD)
        store.add_scores(run_id, [{"row_index": i, "confidence": 0.9} for i in range(12)])
        store.set_run_status(run_id, "done")
        store.set_thresholds(dataset_id, 0.4, 0.8, actor=LEAD)
        store.record_decision(dataset_id, 2, "remove", run_id=run_id, reason="wrong", actor=ANNOTATOR)
        store.decide_query(ReviewQuery(run_id=run_id, gamma=0.5, eta=0.7, max_confidence=0.95), "reject", actor=LEAD)
        store.undo_group(store.last_group(dataset_id)["group_id"], actor=LEAD)
        store.record_audit(LEAD, "sign_in")
        log = store.audit_log(dataset_id)
        assert list(log["action"]) == ["undo_group", "decide_query", "decide", "set_thresholds", "import"]
        assert list(log["actor"]) == ["lee", "lee", "ann", "lee", "root-on-the-cli"]
        assert log["detail"].iloc[2] == {"decision": "remove", "reason": "wrong", "undoes": None}
        assert log["detail"].iloc[3] == {"gamma": 0.4, "eta": 0.8}
        assert log["detail"].iloc[1]["rows"] == 12 and log["detail"].iloc[1]["query"]["max_confidence"] == 0.95
        assert store.audit_log(limit=1)["action"].tolist() == ["sign_in"]  # every dataset and none, newest first
        with pytest.raises(ValueError, match="Unknown audit action"):
            store.record_audit(LEAD, "delete_everything")
    out = tmp_path / "curated.json"
    result = CliRunner().invoke(main, ["export", "--db", str(db), "--out", str(out), "--include-audit"])
    assert result.exit_code == 0, result.output
    assert f"and the audit log to {tmp_path / 'curated.audit.jsonl'}" in result.output
    lines = [json.loads(line) for line in (tmp_path / "curated.audit.jsonl").read_text().splitlines()]
    assert [line["action"] for line in lines] == [
        "import",
        "set_thresholds",
        "decide",
        "decide_query",
        "undo_group",
        "export",
    ]
    assert lines[-1]["actor"] == "root-on-the-cli" and lines[-1]["detail"]["out"] == str(out)
    assert lines[2] == {
        "acted_at": lines[2]["acted_at"],
        "actor": "ann",
        "role": None,
        "action": "decide",
        "dataset_id": 1,
        "run_id": 1,
        "row_index": 2,
        "detail": {"decision": "remove", "reason": "wrong", "undoes": None},
    }
    assert lines[2]["acted_at"].endswith("Z") and lines[0]["role"] == "lead"
    usage = CliRunner().invoke(main, ["export", "--db", str(db), "--push-to-hub", "me/x", "--include-audit"])
    assert usage.exit_code != 0 and "--include-audit writes the audit log next to --out" in usage.output
