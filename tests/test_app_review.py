"""The Review page in AppTest on a real database (12 GSM8K rows, synthetic scores): queue, decisions, undo, bulk
accept, query-wide decisions and their undo, filters, paging, and that dataset text is always escaped."""

from __future__ import annotations

import json

from clear_core import workspace
from clear_core.store import Store

REVIEW = "app_pages/review.py"


def click(at, label: str):
    next(b for b in at.button if b.label == label).click().run()
    return at


def button(at, label: str):
    return next(b for b in at.button if b.label == label)


def current_row(at) -> int:
    heading = next(m.value for m in at.markdown if m.value.startswith("#### Row "))
    return int(heading.split()[2])


def decisions(path, dataset_id):
    with Store(path) as store:
        return store.current_decisions(dataset_id).set_index("row_index")


def test_queue_is_least_confident_first_and_shows_the_diff(app_db, app):
    at = app(REVIEW)
    assert not at.exception and not at.error
    assert list(at.dataframe[0].value["Row"][:4]) == [3, 5, 0, 1]
    assert current_row(at) == 3
    assert "Reviewed 0 of 12 rows" in [p.proto.text for p in at.get("progress")]
    left, right = (h.value for h in at.html if "Original response" in h.value or "Proposed by" in h.value)
    assert '<del class="clear-del">' in left and "I&#x27;m sorry" in left
    # the proposal "<b>72</b> clips" is data: escaped, never markup
    assert "&lt;b&gt;72&lt;/b&gt;" in right and "<b>72" not in right


def test_accept_reject_remove_edit_are_written_at_once_and_move_on(app_db, app):
    path, dataset_id, run_id = app_db
    at = app(REVIEW)
    click(at, "Accept correction")
    assert current_row(at) == 5
    click(at, "Reject")
    assert current_row(at) == 0
    click(at, "Remove")
    assert current_row(at) == 1
    click(at, "Edit")
    at.text_area[0].input("Weng earned $10.").run()
    click(at, "Save edit")
    assert not at.exception and not at.error
    assert current_row(at) == 2

    current = decisions(path, dataset_id)
    assert current.loc[3, "decision"] == "accept" and current.loc[3, "final_response"] == "<b>72</b> clips\nin all."
    assert current.loc[5, "decision"] == "reject" and current.loc[0, "decision"] == "remove"
    assert current.loc[1, "decision"] == "edit" and current.loc[1, "final_response"] == "Weng earned $10."
    assert set(current["annotator"]) == {"alice"}
    assert "Reviewed 4 of 12 rows" in [p.proto.text for p in at.get("progress")]
    assert list(at.dataframe[0].value["Decision"][:4]) == ["Accepted correction", "Kept original", "Removed", "Edited"]


def test_a_decided_row_shows_who_decided_and_when(app_db, app):
    at = app(REVIEW)
    click(at, "Accept correction")
    click(at, "Prev")
    assert current_row(at) == 3
    line = next(h.value for h in at.html if "by <b>alice</b>" in h.value)
    assert "Accepted correction" in line and "UTC" in line


def test_undo_takes_back_the_last_decision(app_db, app):
    path, dataset_id, _ = app_db
    at = app(REVIEW)
    click(at, "Accept correction")
    click(at, "Undo")
    assert current_row(at) == 3
    assert decisions(path, dataset_id).empty
    assert "Reviewed 0 of 12 rows" in [p.proto.text for p in at.get("progress")]


def test_decisions_need_an_annotator_name(app_db, app):
    at = app(REVIEW, annotator=None)
    for label in ("Accept correction", "Reject", "Remove", "Edit", "Undo"):
        assert button(at, label).disabled
    assert not button(at, "Next").disabled
    at.sidebar.text_input[0].input("bob").run()
    assert not button(at, "Reject").disabled
    click(at, "Reject")
    path, dataset_id, _ = app_db
    assert decisions(path, dataset_id).loc[3, "annotator"] == "bob"


def test_accept_is_disabled_without_a_proposal(app_db, app):
    at = app(REVIEW)
    click(at, "Next")
    click(at, "Next")
    assert current_row(at) == 0
    assert button(at, "Accept correction").disabled
    assert any("No proposal for this row" in c.value for c in at.caption)


def test_bulk_accept_accepts_every_undecided_proposal_above_the_threshold(app_db, app):
    path, dataset_id, _ = app_db
    at = app(REVIEW)
    at.slider(key="bulk_threshold").set_value(0.5).run()
    assert button(at, "Accept 2 proposals as alice")
    click(at, "Accept 2 proposals as alice")
    current = decisions(path, dataset_id)
    assert sorted(current.index) == [3, 5] and set(current["decision"]) == {"accept"}
    assert current.loc[5, "final_response"] == "She earned $10."
    assert button(at, "Accept 0 proposals as alice").disabled


def test_a_query_wide_remove_shows_a_dry_run_needs_a_confirmation_and_undoes_as_one_group(app_db, app):
    path, dataset_id, _ = app_db
    at = app(REVIEW)
    click(at, "Accept correction")  # row 3
    click(at, "Reject")  # row 5, which the group below removes and its undo gives back
    at.pills(key="review_actions").set_value(["filter"]).run()  # rows 5, 0, 1 and 2
    assert at.radio(key="group_decision").value == "remove"
    assert any(c.value.startswith("4 rows match the filters; 4 rows would be recorded as “Remove”") for c in at.caption)
    assert button(at, "Remove 4 rows").disabled  # not before the confirmation
    at.checkbox(key="group_confirm").check().run()
    click(at, "Remove 4 rows")
    assert not at.exception and not at.error
    current = decisions(path, dataset_id)
    assert current.loc[[5, 0, 1, 2], "decision"].tolist() == ["remove"] * 4 and current.loc[3, "decision"] == "accept"
    assert "Reviewed 5 of 12 rows" in [p.proto.text for p in at.get("progress")]
    assert not at.checkbox(key="group_confirm").value  # the next group needs its own confirmation

    click(at, "Undo last group (4 rows)")
    current = decisions(path, dataset_id)
    assert current["decision"].to_dict() == {3: "accept", 5: "reject"}  # row 5's earlier decision is back
    assert "Reviewed 2 of 12 rows" in [p.proto.text for p in at.get("progress")]
    assert not [b for b in at.button if b.label.startswith("Undo last group")]


def test_a_query_wide_accept_counts_only_rows_with_a_proposal(app_db, app):
    path, dataset_id, _ = app_db
    at = app(REVIEW)
    at.radio(key="group_decision").set_value("accept").run()
    dry_run = "12 rows match the filters; 2 rows would be recorded as “Accept proposals” (10 rows without a proposal"
    assert any(c.value.startswith(dry_run) for c in at.caption)
    at.checkbox(key="group_confirm").check().run()
    click(at, "Accept the proposals of 2 rows")
    assert decisions(path, dataset_id)["final_response"].to_dict() == {
        3: "<b>72</b> clips\nin all.",
        5: "She earned $10.",
    }


def test_filters_narrow_the_queue(app_db, app):
    at = app(REVIEW)
    at.pills(key="review_actions").set_value(["filter"]).run()
    assert list(at.dataframe[0].value["Row"]) == [5, 0, 1, 2]
    at.pills(key="review_actions").set_value([]).run()
    at.text_input(key="review_search").input("Weng").run()
    assert list(at.dataframe[0].value["Row"]) == [1]
    assert current_row(at) == 1
    at.text_input(key="review_search").input("").run()
    at.slider(key="review_range").set_range(0.6, 0.75).run()
    assert list(at.dataframe[0].value["Row"]) == [6, 7, 8, 9]
    at.slider(key="review_range").set_range(0.0, 1.0).run()
    at.selectbox(key="review_sort").select("Row number").run()
    assert list(at.dataframe[0].value["Row"][:3]) == [0, 1, 2]


def test_not_reviewed_filter_drops_decided_rows_and_keeps_the_place(app_db, app):
    at = app(REVIEW)
    at.selectbox(key="review_status").select("undecided").run()
    click(at, "Reject")
    assert current_row(at) == 5
    assert 3 not in list(at.dataframe[0].value["Row"])
    at.text_input(key="review_search").input("no such text anywhere").run()
    assert any("No rows match" in i.value for i in at.info)


def test_next_crosses_to_the_next_page(tmp_path, monkeypatch, app):
    records = [{"instruction": f"What is {i} + {i}?", "input": "", "output": f"It is {2 * i}."} for i in range(60)]
    source = tmp_path / "sums.json"
    source.write_text(json.dumps(records), encoding="utf-8")
    path = tmp_path / "paged.duckdb"
    monkeypatch.setenv("CLEAR_DB", str(path))
    monkeypatch.setenv("CLEAR_NO_DEMO", "1")
    with Store(path) as store:
        dataset_id = workspace.import_file(store, source)
        run_id = store.create_run(dataset_id, "synthetic", {})
        store.add_scores(run_id, [{"row_index": i, "confidence": i / 100} for i in range(60)])
        store.set_run_status(run_id, "done")
    at = app(REVIEW)
    assert len(at.dataframe[0].value) == 50
    assert any("page 1 of 2" in c.value for c in at.caption)
    at.session_state["review_row"] = 49
    at.run()
    click(at, "Next")
    assert current_row(at) == 50
    assert any("page 2 of 2" in c.value for c in at.caption)
    assert not at.warning and not at.exception
    click(at, "Prev")
    assert current_row(at) == 49


def test_untrusted_text_is_escaped_everywhere(tmp_path, monkeypatch, app):
    evil = '<img src=x onerror="alert(1)"> **bold** [link](http://x) :red[red]'
    source = tmp_path / "evil.jsonl"
    source.write_text(json.dumps({"prompt": evil, "response": evil + " <script>x()</script>"}) + "\n", "utf-8")
    path = tmp_path / "evil.duckdb"
    monkeypatch.setenv("CLEAR_DB", str(path))
    monkeypatch.setenv("CLEAR_NO_DEMO", "1")
    with Store(path) as store:
        dataset_id = workspace.import_file(store, source, name="**evil** <b>name</b>")
        run_id = store.create_run(dataset_id, "synthetic", {})
        store.add_scores(
            run_id,
            [{"row_index": 0, "confidence": 0.1, "proposed_response": "<b>hi</b>", "correction_confidence": 0.9}],
        )
        store.set_run_status(run_id, "done")
    at = app(REVIEW)
    assert not at.exception
    bodies = " ".join(h.value for h in at.html)
    assert "<img" not in bodies and "<script" not in bodies and "<b>hi" not in bodies
    prompt = next(h.value for h in at.html if "Prompt</p>" in h.value)
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt; **bold** [link](http://x) :red[red]" in prompt
    assert "script" in bodies and "&lt;" in bodies
    heading = next(h.value for h in at.html if "Review · " in h.value)
    assert "**evil** &lt;b&gt;name&lt;/b&gt;" in heading and "<b>name" not in heading


def test_no_scores_yet_points_to_the_run_page(tmp_path, monkeypatch, gsm8k_file, app):
    path = tmp_path / "unscored.duckdb"
    monkeypatch.setenv("CLEAR_DB", str(path))
    monkeypatch.setenv("CLEAR_NO_DEMO", "1")
    with Store(path) as store:
        workspace.import_file(store, gsm8k_file)
    at = app(REVIEW)
    assert any("has not been scored yet" in i.value for i in at.info)
    assert at.get("page_link")


def test_rows_appear_while_a_run_is_scoring(tmp_path, monkeypatch, gsm8k_file, app):
    path = tmp_path / "live.duckdb"
    monkeypatch.setenv("CLEAR_DB", str(path))
    monkeypatch.setenv("CLEAR_NO_DEMO", "1")
    with Store(path) as store:
        dataset_id = workspace.import_file(store, gsm8k_file)
        run_id = store.create_run(dataset_id, "synthetic", {})
        store.set_run_status(run_id, "running")
    at = app(REVIEW)
    assert any(p.proto.text.startswith("Scoring in progress") for p in at.get("progress"))
    assert any("No rows are scored yet" in i.value for i in at.info)
    scores = [{"row_index": i, "confidence": 0.3 + i / 10} for i in range(3)] + [{"row_index": 3, "confidence": 0.1}]
    with Store(path) as store:  # what ingesting a finished chunk does
        store.add_scores(run_id, scores)
    at.run()
    assert list(at.dataframe[0].value["Row"]) == [3, 0, 1, 2]
    assert current_row(at) == 3


def test_editing_an_edited_row_starts_from_the_edit(app_db, app):
    at = app(REVIEW)
    click(at, "Edit")
    assert at.text_area[0].value == "<b>72</b> clips\nin all."  # the proposal, when there is one
    at.text_area[0].input("First edit.").run()
    click(at, "Save edit")
    click(at, "Prev")
    click(at, "Edit")
    assert at.text_area[0].value == "First edit."


def test_rows_that_could_not_be_scored_are_listed_apart_with_their_reason(app_db, app):
    path, dataset_id, run_id = app_db
    with Store(path) as store:  # what ingesting a chunk with a failed row does
        store.add_scores(run_id, [{"row_index": 7, "error": "RuntimeError: probability tensor contains inf"}])
    at = app(REVIEW)
    assert 7 not in list(at.dataframe[0].value["Row"])  # no automatic action, so not in the normal queue
    at.selectbox(key="review_status").select("failed").run()
    assert not at.exception
    assert list(at.dataframe[0].value["Row"]) == [7]
    assert list(at.dataframe[0].value["Action"]) == ["Failed"]
    assert current_row(at) == 7
    assert any("could not score this row" in e.value for e in at.error)
    assert [c.value for c in at.code] == ["RuntimeError: probability tensor contains inf"]
    assert button(at, "Accept correction").disabled  # no proposal to accept
    click(at, "Remove")  # a person can still decide: drop it from the export
    assert decisions(path, dataset_id).loc[7, "decision"] == "remove"
    assert list(at.dataframe[0].value["Row"]) == [7]  # still failed, so still listed here


def test_pages_disable_what_the_actors_role_does_not_allow(app_db, app, monkeypatch):
    """Local mode's one user is a lead (nothing disabled); were the actor an annotator, the pages would ask
    permissions.allowed, leave out the bulk menus and disable the thresholds, leaving reviewing as it is."""
    from clear_core import permissions

    monkeypatch.setattr(permissions, "local_actor", lambda name: permissions.Actor("u1", name, "annotator"))
    at = app(REVIEW)
    assert not at.exception and not at.error
    for label in ("Accept correction", "Reject", "Remove", "Edit", "Undo"):
        assert not button(at, label).disabled
    labels = [b.label for b in at.button]
    assert "Accept 1 proposals as alice" not in labels and "Remove 12 rows" not in labels  # a lead's actions
    assert not at.get("popover") and not [c for c in at.checkbox if c.key == "group_confirm"]
    at.switch_page("app_pages/thresholds.py").run()
    assert at.slider(key="th_gamma").disabled and at.slider(key="th_eta").disabled
    assert button(at, "Reset to defaults").disabled
