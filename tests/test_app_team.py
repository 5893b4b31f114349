"""Many annotators at once in AppTest (issue 9), on a real database (12 GSM8K rows, synthetic scores; the queue is
rows 3, 5, 0, 1, ...): Review skips rows someone else has open, says who else has a row open and who decided it
before you; the Team page shows the open rows, the overlap setting, and each person's counts, speed and agreement."""

from __future__ import annotations

import datetime as dt

import pytest
from argon2 import PasswordHasher

from app_pages import _session
from clear_core import accounts
from clear_core.permissions import Actor, NotAllowed, local_actor
from clear_core.store import Store
from tests.test_app_signin import sign_in, write_team

REVIEW, TEAM = "app_pages/review.py", "app_pages/team.py"
ANN = Actor("u-ann", "ann", "annotator")


def button(at, label: str):
    return next(b for b in at.button if b.label == label)


def current_row(at) -> int:
    heading = next(m.value for m in at.markdown if m.value.startswith("#### Row "))
    return int(heading.split()[2])


def html(at) -> list[str]:
    return [h.value for h in at.html]


def test_review_skips_a_row_someone_else_has_open(app_db, app):
    path, dataset_id, run_id = app_db
    with Store(path) as store:
        assert store.claim(dataset_id, 3, actor=local_actor("dave"))["granted"]  # dave opened the first row
    at = app(REVIEW, annotator="carol")
    assert not at.exception and not at.error
    assert current_row(at) == 5  # row 3 is dave's: carol's queue starts at the next one
    assert not [line for line in html(at) if "Also open" in line]
    button(at, "Next").click().run()
    assert current_row(at) == 0
    button(at, "Prev").click().run()
    assert current_row(at) == 5
    button(at, "Prev").click().run()
    assert current_row(at) == 5  # the row above is dave's: Prev skips it (nothing else above)
    with Store(path) as store:
        leases = store.active_leases(dataset_id)
    assert sorted(zip(leases["row_index"], leases["actor_name"], strict=True)) == [(3, "dave"), (5, "carol")]


def test_one_person_sees_nothing_of_leases(app_db, app):
    at = app(REVIEW, annotator="carol")
    assert current_row(at) == 3
    button(at, "Reject").click().run()
    assert current_row(at) == 5 and not at.exception
    assert not [line for line in html(at) if "Also open" in line or "before you" in line]


def test_two_people_on_one_row_see_each_other_and_both_decisions_are_kept(app_db, app):
    path, dataset_id, _ = app_db
    with Store(path) as store:
        store.set_review_settings(dataset_id, overlap=2, actor=local_actor("lee"))
    at = app(REVIEW, annotator="carol")
    assert current_row(at) == 3
    with Store(path) as store:
        assert store.claim(dataset_id, 3, actor=local_actor("dave"))["others"] == ["carol"]
    at.run()
    assert any("⚠ Also open: row 3 by <b>dave</b>" in line for line in html(at))
    with Store(path) as store:  # dave decides first, while carol still has the row open
        store.record_decision(dataset_id, 3, "remove", actor=local_actor("dave"))
    button(at, "Reject").click().run()
    toasts = [t.value for t in at.toast]
    assert any("Row 3: Decided before you by dave (Removed), just now. Yours is the latest" in t for t in toasts)
    button(at, "Prev").click().run()
    assert current_row(at) == 3
    assert any("Decided before you by dave (Removed), just now" in line for line in html(at))
    with Store(path) as store:
        log = store.decision_log(dataset_id)
        current = store.current_decisions(dataset_id).set_index("row_index")
    assert log[["annotator", "decision"]].values.tolist() == [["dave", "remove"], ["carol", "reject"]]
    assert current.loc[3, "annotator"] == "carol"  # the latest decision counts for export


def test_with_overlap_a_row_decided_once_stays_in_the_next_persons_queue(app_db, app):
    path, dataset_id, _ = app_db
    with Store(path) as store:
        store.set_review_settings(dataset_id, overlap=2, actor=local_actor("lee"))
        for row in (3, 5):
            store.record_decision(dataset_id, row, "remove", actor=local_actor("dave"))
    at = app(REVIEW, annotator="carol")
    at.selectbox(key="review_status").set_value("undecided").run()
    assert not at.exception
    assert list(at.dataframe[0].value["Row"][:3]) == [3, 5, 0]  # dave alone decided 3 and 5: still carol's to do
    assert current_row(at) == 3
    # Blind review: what dave decided stays out of sight until carol has decided herself.
    assert list(at.dataframe[0].value["Decision"][:2]) == ["", ""]
    assert any("not reviewed yet" in line for line in html(at)) and not any("dave" in line for line in html(at))
    button(at, "Reject").click().run()
    assert list(at.dataframe[0].value["Row"][:2]) == [5, 0]  # carol decided 3: two people, done


def seed_team(path, dataset_id) -> None:
    """ann and bob decide rows 0-5 (agreeing on 0, 2, 3, 5), 10 s apart; ann also has row 6 open."""
    ann, bob = local_actor("ann"), local_actor("bob")
    with Store(path) as store:
        for row, (a, b) in enumerate(
            [
                ("remove", "remove"),
                ("remove", "reject"),
                ("accept", "accept"),
                ("reject", "reject"),
                ("reject", "remove"),
                ("edit", "accept"),
            ]
        ):
            store.record_decision(
                dataset_id, row, a, run_id=1, final_response="x" if a in ("edit", "accept") else None, actor=ann
            )
            store.record_decision(
                dataset_id, row, b, run_id=1, final_response="y" if b == "accept" else None, actor=bob
            )
        store.claim(dataset_id, 6, actor=ann, now=dt.datetime.now(dt.UTC).replace(tzinfo=None))


def test_team_page_shows_open_rows_counts_and_agreement(app_db, app):
    path, dataset_id, _ = app_db
    seed_team(path, dataset_id)
    at = app(TEAM, annotator="lee")
    assert not at.exception and not at.error
    frames = [df.value for df in at.dataframe]
    open_rows = next(f for f in frames if "Open by" in f.columns)
    assert open_rows[["Row", "Open by"]].values.tolist() == [[6, "ann"]]
    people = next(f for f in frames if "Rows decided" in f.columns).set_index("Annotator")
    assert people.loc["ann", "Rows decided"] == 6 and people.loc["bob", "Also decided by others"] == 6
    pairs = next(f for f in frames if "Cohen's κ" in f.columns)
    # outcomes ann f,f,c,k,k,c vs bob f,k,c,k,f,c: 4 of 6 the same, marginals 2/2/2 each -> κ = (2/3-1/3)/(2/3) = 0.5
    assert pairs.values.tolist() == [["ann", "bob", 6, "67%", "0.50"]]
    assert any("Fleiss' κ over the 6 rows decided by two or more people: <b>0.50</b>" in line for line in html(at))


def test_a_lead_sets_the_overlap_on_the_team_page(app_db, app):
    path, dataset_id, _ = app_db
    at = app(TEAM, annotator="lee")
    at.number_input(key="team_overlap").set_value(3)
    at.number_input(key="team_lease_min").set_value(5)
    button(at, "Save").click().run()
    assert not at.exception and not at.error
    with Store(path) as store:
        settings = store.review_settings(dataset_id)
    assert (settings["overlap"], settings["lease_seconds"], settings["updated_by"]) == (3, 300, "lee")
    assert any("No row was decided by two people yet" in c.value for c in at.caption) or any(
        "Nobody has decided a row yet" in c.value for c in at.caption
    )


def test_leaving_review_gives_the_open_row_back(app_db, app):
    path, dataset_id, _ = app_db
    at = app(REVIEW, annotator="carol")
    with Store(path) as store:
        assert store.active_leases(dataset_id)["actor_name"].tolist() == ["carol"]
    at.switch_page("app_pages/thresholds.py").run()
    assert not at.exception
    with Store(path) as store:
        assert store.active_leases(dataset_id).empty


def test_a_blind_reviewer_cannot_find_others_decisions_with_the_filters(app_db, app):
    """Overlap 2: dave removed rows 3 and 5 (reason: wrong). Carol asking for removed rows, or rows removed as wrong,
    finds none of them; her own decision is the one her filters and queue read."""
    path, dataset_id, _ = app_db
    with Store(path) as store:
        store.set_review_settings(dataset_id, overlap=2, actor=local_actor("lee"))
        for row in (3, 5):
            store.record_decision(dataset_id, row, "remove", reason="wrong", actor=local_actor("dave"))
    at = app(REVIEW, annotator="carol")
    at.selectbox(key="review_status").set_value("remove").run()
    assert not at.exception and [i.value for i in at.info] == ["No rows match these filters."]
    at.selectbox(key="review_status").set_value("all").run()
    at.selectbox(key="review_reason_filter").set_value("wrong").run()
    assert [i.value for i in at.info] == ["No rows match these filters."]
    at.selectbox(key="review_reason_filter").set_value("any").run()
    at.selectbox(key="review_status").set_value("decided").run()
    assert [i.value for i in at.info] == ["No rows match these filters."]  # reviewed by dave, not by carol
    at.selectbox(key="review_status").set_value("all").run()
    assert current_row(at) == 3 and list(at.dataframe[0].value["Decision"][:2]) == ["", ""]
    button(at, "Reject").click().run()
    at.selectbox(key="review_status").set_value("decided").run()
    assert list(at.dataframe[0].value["Row"]) == [3]
    assert list(at.dataframe[0].value["Decision"]) == ["Kept original"]  # hers, though dave's is in the log too
    at.selectbox(key="review_status").set_value("remove").run()
    assert [i.value for i in at.info] == ["No rows match these filters."]


# -- team mode: a lead undoes anyone's decision on the Team page; the activity shows each person's role ----------


@pytest.fixture
def team_mode(app_db, monkeypatch):
    """app_db in team mode, as test_app_signin's team_db: lee and lena are leads, ann an annotator."""
    monkeypatch.setattr(accounts, "HASHER", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    monkeypatch.delenv(accounts.USERS_ENV, raising=False)
    _session.backoff.clear()
    write_team(app_db[0], lena="lead")
    return app_db


def undo_row(at, row: int):
    at.number_input(key="team_undo_row").set_value(row).run()
    return at


def test_a_lead_undoes_an_annotators_decision_on_the_team_page(team_mode, app):
    path, dataset_id, run_id = team_mode
    with Store(path) as store:
        decided = store.record_decision(dataset_id, 3, "remove", run_id=run_id, actor=ANN)
    at = sign_in(app(), "lee")
    at.switch_page(TEAM).run()
    undo_row(at, 3)
    assert not at.exception and not at.error
    assert any("<b>Removed</b> by <b>ann</b>, just now" in line for line in html(at))
    at.button(key=f"team_undo_{decided}").click().run()
    assert not at.exception and not at.error
    assert [t.value for t in at.toast] == [
        "Undid ann's “Removed” on row 3: the row is back to the decision it had before."
    ]
    assert [c.value for c in at.caption if c.value.startswith("Nobody's")] == ["Nobody's decision on row 3 stands."]
    with Store(path) as store:
        log = store.decision_log(dataset_id)
        assert store.current_decisions(dataset_id).empty
    assert log[["annotator", "decision"]].values.tolist() == [["ann", "remove"], ["lee", "undo"]]
    assert log["undoes"].iloc[-1] == decided  # the lead's undo points at ann's decision
    activity = at.dataframe[1].value
    assert activity[["actor", "role", "action"]].values.tolist() == [
        ["lee", "lead", "undo"],  # decisions record no role: the users file's stands in
        ["ann", "annotator", "decide"],
        [activity["actor"].iloc[2], "lead", "import"],  # recorded with the action (the command line's user)
    ]
    # The import has no run and no row: those cells are blank, not Streamlit's default "None".
    assert activity[["run_id", "row_index"]].iloc[2].isna().all()
    assert at.dataframe[1].proto.HasField("placeholder") and at.dataframe[1].proto.placeholder == ""


def test_an_annotator_is_refused_undoing_someone_elses_decision(team_mode, app, monkeypatch):
    """The Undo drawn for lena the lead; the users file then makes her an annotator: her click reaches the store as
    an annotator's and is refused there, and the decision stands. The Team page is a lead's, so she lands on Review,
    and the refusal is shown there."""
    path, dataset_id, run_id = team_mode
    calls = []
    undo_decision = Store.undo_decision

    def recorded(self, decision_id, *, actor):
        try:
            return undo_decision(self, decision_id, actor=actor)
        except NotAllowed as refusal:
            calls.append((actor.name, actor.role, str(refusal)))
            raise

    monkeypatch.setattr(Store, "undo_decision", recorded)
    with Store(path) as store:
        decided = store.record_decision(dataset_id, 3, "remove", run_id=run_id, actor=ANN)
    at = sign_in(app(), "lena")
    at.switch_page(TEAM).run()
    undo_row(at, 3)
    write_team(path, lena="annotator")
    at.button(key=f"team_undo_{decided}").click().run()
    assert not at.exception
    refusal = "lena (annotator) may not undo other people's decisions; ask a lead."
    assert calls == [("lena", "annotator", refusal)]
    assert [e.value for e in at.error] == [refusal]
    with Store(path) as store:
        assert store.decision_log(dataset_id)["decision"].tolist() == ["remove"]
        assert store.current_decisions(dataset_id)["annotator"].tolist() == ["ann"]
    assert current_row(at) == 3  # Review, the page every role has
    at.run()
    assert not at.error  # shown once
