"""A curation database full of hostile user text, for the tests that check the app shows it verbatim.

The same string is the dataset's name, the annotator's name on a decision, the run's model id and part of the
run's error: Markdown would make a live link of it (twice), bold text, an emoji and an arrow.
"""

from __future__ import annotations

import html
from pathlib import Path

from clear_core import permissions, workspace
from clear_core.store import Store
from tests.conftest import synthetic_scores

HOSTILE = "[me](http://evil.example) <b>x</b> http://evil.example :smile: ->"
HOSTILE_HTML = html.escape(HOSTILE)  # how it reads inside our own (escaped) HTML
DECIDED_ROW = 3  # the least confident row of `synthetic_scores`: the first in the Review queue
FAILED_ROW = 11  # a row the worker could not score, with an exception that quotes the row's text
FAILED_ROW_ERROR = f"ValueError: cannot read {HOSTILE}"


def seed(path: Path, source: Path) -> tuple[int, int]:
    """Import ``source`` named HOSTILE, score it synthetically in a failed run whose model and error quote HOSTILE
    (one row failed, its error quoting HOSTILE too), and record a decision by an annotator named HOSTILE.
    Returns (dataset_id, run_id)."""
    with Store(path) as store:
        dataset_id = workspace.import_file(store, source, name=HOSTILE)
        n_rows = store.get_dataset(dataset_id)["n_rows"]
        run_id = store.create_run(dataset_id, HOSTILE, {"samples": 0})
        records = synthetic_scores(n_rows)
        records[FAILED_ROW] = {"row_index": FAILED_ROW, "error": FAILED_ROW_ERROR}
        store.add_scores(run_id, records)
        store.record_decision(dataset_id, DECIDED_ROW, "reject", run_id=run_id, actor=permissions.local_actor(HOSTILE))
        store.set_run_status(run_id, "failed", error=f"The model {HOSTILE} could not be loaded.")
    return dataset_id, run_id
