"""The curation database's schema history: numbered migrations, applied at start-up so an old file upgrades itself.

Users keep their curation databases for months. Each file records in ``_migrations`` the versions it has applied;
``store.Store`` reads them (``applied_versions``), refuses a file written by a newer CLEAR Review or one that needs
upgrading but is opened read-only, and applies the ``pending`` ones oldest first, each with ``apply`` in its own
transaction, so a failure leaves the file at the last version that applied. Only the schema's SQL lives here; every
other statement is in ``store.py``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

import duckdb

# The schema's history. Append new (version, SQL) pairs; never edit one that has shipped, because users keep
# their curation databases for months and each file records which versions it has applied.
MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE SEQUENCE dataset_id_seq START 1;
        CREATE TABLE datasets (
            dataset_id BIGINT PRIMARY KEY DEFAULT nextval('dataset_id_seq'),
            name VARCHAR NOT NULL,
            source_path VARCHAR,
            file_format VARCHAR,
            schema VARCHAR,
            mapping_json VARCHAR,
            columns_json VARCHAR,
            content_hash VARCHAR,
            n_rows BIGINT NOT NULL,
            created_at TIMESTAMP NOT NULL
        );
        CREATE TABLE rows (
            dataset_id BIGINT NOT NULL,
            row_index BIGINT NOT NULL,
            record_json VARCHAR NOT NULL,
            prompt VARCHAR,
            prompt_messages_json VARCHAR NOT NULL,
            response VARCHAR,
            PRIMARY KEY (dataset_id, row_index)
        );
        """,
    ),
    (
        2,
        """
        CREATE SEQUENCE run_id_seq START 1;
        CREATE TABLE runs (
            run_id BIGINT PRIMARY KEY DEFAULT nextval('run_id_seq'),
            dataset_id BIGINT NOT NULL,
            model VARCHAR NOT NULL,
            params_json VARCHAR NOT NULL,
            status VARCHAR NOT NULL,
            rows_total BIGINT NOT NULL,
            error VARCHAR,
            created_at TIMESTAMP NOT NULL,
            started_at TIMESTAMP,
            finished_at TIMESTAMP,
            work_dir VARCHAR
        );
        CREATE TABLE scores (
            run_id BIGINT NOT NULL,
            row_index BIGINT NOT NULL,
            confidence DOUBLE,
            confidence_bsdetector DOUBLE,
            consistency DOUBLE,
            self_reflection DOUBLE,
            logprob_mean DOUBLE,
            logprob_uncond_mean DOUBLE,
            pmi DOUBLE,
            eos_prob DOUBLE,
            n_response_tokens INTEGER,
            proposed_response VARCHAR,
            judge_prob DOUBLE,
            correction_confidence DOUBLE,
            scored_at TIMESTAMP NOT NULL,
            PRIMARY KEY (run_id, row_index)
        );
        """,
    ),
    (
        3,
        """
        CREATE SEQUENCE decision_id_seq START 1;
        CREATE TABLE decisions (
            decision_id BIGINT PRIMARY KEY DEFAULT nextval('decision_id_seq'),
            dataset_id BIGINT NOT NULL,
            row_index BIGINT NOT NULL,
            run_id BIGINT,
            decision VARCHAR NOT NULL,
            final_response VARCHAR,
            annotator VARCHAR NOT NULL,
            undoes BIGINT,
            decided_at TIMESTAMP NOT NULL
        );
        CREATE TABLE thresholds (
            dataset_id BIGINT PRIMARY KEY,
            gamma DOUBLE NOT NULL,
            eta DOUBLE NOT NULL,
            updated_at TIMESTAMP NOT NULL,
            updated_by VARCHAR
        );
        """,
    ),
    (
        4,
        # The least likely response token: one wrong number or word stands out here while the mean dilutes it.
        "ALTER TABLE scores ADD COLUMN logprob_min DOUBLE;",
    ),
    (
        5,
        # p(a natural stop right after the response), which detects truncation far better than end-of-turn alone,
        # the log-probability of the response's final number (a changed answer shows here), and the two
        # deterministic checks of clear_core/checks.py: repeated sentences and wrong arithmetic.
        """
        ALTER TABLE scores ADD COLUMN stop_prob DOUBLE;
        ALTER TABLE scores ADD COLUMN final_number_logprob DOUBLE;
        ALTER TABLE scores ADD COLUMN repetition DOUBLE;
        ALTER TABLE scores ADD COLUMN arithmetic_errors INTEGER;
        """,
    ),
    (
        6,
        # Why the worker could not score a row ("ExceptionType: message"); NULL for a row scored normally. A failed
        # row keeps its place in `scores` (so Review can list it) with every signal NULL.
        "ALTER TABLE scores ADD COLUMN error VARCHAR;",
    ),
    (
        7,
        # Why a row was removed or its proposal rejected (one of store.REASONS) and the annotator's optional note;
        # NULL for other decisions and for those recorded before reasons existed.
        """
        ALTER TABLE decisions ADD COLUMN reason VARCHAR;
        ALTER TABLE decisions ADD COLUMN note VARCHAR;
        """,
    ),
    (
        8,
        # Query-wide decisions (remove, accept or keep every row a ReviewQuery selects) as one group: the group
        # records its query, so the audit log says what was selected, and one undo reverts all its decisions.
        """
        CREATE SEQUENCE group_id_seq START 1;
        CREATE TABLE decision_groups (
            group_id BIGINT PRIMARY KEY DEFAULT nextval('group_id_seq'),
            dataset_id BIGINT NOT NULL,
            run_id BIGINT,
            decision VARCHAR NOT NULL,
            query_json VARCHAR NOT NULL,
            n_rows BIGINT NOT NULL,
            actor VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL,
            undone_at TIMESTAMP,
            undone_by VARCHAR
        );
        ALTER TABLE decisions ADD COLUMN group_id BIGINT;
        """,
    ),
    (
        9,
        # Each row's duplicate group per kind ('response' | 'prompt', dedupe.py): group_id is the group's lowest
        # row_index, a row without duplicates is its own group (so "computed, none found" is stored too). Filled
        # by Store.find_duplicates after import; a dataset without rows here has them computed on first use.
        """
        CREATE TABLE duplicate_groups (
            dataset_id BIGINT NOT NULL,
            kind VARCHAR NOT NULL,
            row_index BIGINT NOT NULL,
            group_id BIGINT NOT NULL,
            PRIMARY KEY (dataset_id, kind, row_index)
        );
        """,
    ),
    (
        10,
        # The audit log (issue 9): who did what that is not a review decision (decisions and decision groups keep
        # their own annotator/actor): sign-in and sign-out, import, run start and cancel, threshold changes,
        # exports. ``actor`` is the signed-in user's name (local mode: the name typed in the sidebar, the command
        # line: the system user), ``role`` their role then, ``detail_json`` what the action needs to be understood.
        """
        CREATE SEQUENCE audit_id_seq START 1;
        CREATE TABLE audit_log (
            audit_id BIGINT PRIMARY KEY DEFAULT nextval('audit_id_seq'),
            acted_at TIMESTAMP NOT NULL,
            actor VARCHAR NOT NULL,
            role VARCHAR,
            action VARCHAR NOT NULL,
            dataset_id BIGINT,
            run_id BIGINT,
            detail_json VARCHAR
        );
        """,
    ),
    (
        11,
        # Many annotators at once (issue 9). ``leases``: who holds which row right now (the Review queue hands a
        # row out on open and takes it back on decide, skip or expiry), keyed by the actor's id; a row may be held
        # by several people only while its overlap asks for more deciders. ``review_settings``: per dataset, how
        # many different people must decide each row (``overlap``, 1 = once) and how long a lease lasts.
        """
        CREATE TABLE leases (
            dataset_id BIGINT NOT NULL,
            row_index BIGINT NOT NULL,
            actor_id VARCHAR NOT NULL,
            actor_name VARCHAR NOT NULL,
            claimed_at TIMESTAMP NOT NULL,
            expires_at TIMESTAMP NOT NULL,
            PRIMARY KEY (dataset_id, row_index, actor_id)
        );
        CREATE TABLE review_settings (
            dataset_id BIGINT PRIMARY KEY,
            overlap INTEGER NOT NULL,
            lease_seconds INTEGER NOT NULL,
            updated_at TIMESTAMP NOT NULL,
            updated_by VARCHAR
        );
        """,
    ),
    (
        12,
        # Look-ups by row_index: a Review page reads the text and scores of its 50 rows by key, and DuckDB uses an
        # index only on a single column (the primary keys start with dataset_id / run_id); without these it reads
        # every prompt and response of the dataset to find 50 of them (1.8 s at 1M rows instead of ~10 ms).
        """
        CREATE INDEX rows_row_index ON rows (row_index);
        CREATE INDEX scores_row_index ON scores (row_index);
        """,
    ),
    (
        13,
        # Calibration on the user's own data (calibration.py). New signals per row: the prompt-echo check, the form
        # score against the dataset's own form model, and the combiner's raw logit that every calibration maps.
        # ``calibration_rows``: corrupted copies of a sample of the dataset's rows, scored with the run (negative
        # row indices in the hand-off, never part of the dataset). ``calibrations``: each map a run has used, newest
        # last. (The index on scores.row_index is dropped and made again: DuckDB alters no table with an index.)
        """
        DROP INDEX scores_row_index;
        ALTER TABLE scores ADD COLUMN prompt_copy DOUBLE;
        ALTER TABLE scores ADD COLUMN form_score DOUBLE;
        ALTER TABLE scores ADD COLUMN raw_logit DOUBLE;
        ALTER TABLE scores ADD COLUMN proposal_raw_logit DOUBLE;
        CREATE INDEX scores_row_index ON scores (row_index);
        CREATE TABLE calibration_rows (
            run_id BIGINT NOT NULL,
            row_index BIGINT NOT NULL,
            source_row_index BIGINT NOT NULL,
            kind VARCHAR NOT NULL,
            prompt_messages_json VARCHAR NOT NULL,
            prompt VARCHAR NOT NULL,
            response VARCHAR NOT NULL,
            raw_logit DOUBLE,
            signals_json VARCHAR,
            error VARCHAR,
            PRIMARY KEY (run_id, row_index)
        );
        CREATE TABLE calibrations (
            run_id BIGINT NOT NULL,
            fitted_at TIMESTAMP NOT NULL,
            source VARCHAR NOT NULL,
            a DOUBLE NOT NULL,
            b DOUBLE NOT NULL,
            noise_share DOUBLE,
            n_good BIGINT NOT NULL,
            n_bad BIGINT NOT NULL,
            note VARCHAR,
            fitted_by VARCHAR
        );
        """,
    ),
    (
        14,
        # checks.unclosed_brackets: brackets and code fences a response leaves open (code cut off at the end of a
        # statement, where the stop probability sees nothing wrong). An input of the combiner's completeness factor.
        """
        DROP INDEX scores_row_index;
        ALTER TABLE scores ADD COLUMN unclosed_brackets INTEGER;
        CREATE INDEX scores_row_index ON scores (row_index);
        """,
    ),
    (
        15,
        # A row's prompt_messages_json may be NULL: the prompt as one user turn (store._with_messages rebuilds it).
        # An import of a plain JSON Lines file stores NULL there instead of writing each prompt a third time (a
        # fifth of the text a 1M-row import wrote). Rows stored before keep their text. (The index on rows.row_index
        # is dropped and made again: DuckDB alters no table with an index.)
        """
        DROP INDEX rows_row_index;
        ALTER TABLE rows ALTER COLUMN prompt_messages_json DROP NOT NULL;
        CREATE INDEX rows_row_index ON rows (row_index);
        """,
    ),
    (
        16,
        # What the Thresholds page draws from a run's scores alone (its grid part, the review budget's bins, the
        # scatter's candidate rows), kept per scores version so a fresh process reads kilobytes instead of every
        # score (Store.threshold_summary). Each frame is an Arrow IPC stream; a stale one is replaced.
        """
        CREATE TABLE score_summaries (
            run_id BIGINT NOT NULL,
            name VARCHAR NOT NULL,
            version VARCHAR NOT NULL,
            frame BLOB NOT NULL,
            computed_at TIMESTAMP NOT NULL
        );
        """,
    ),
]


def applied_versions(cursor: duckdb.DuckDBPyConnection) -> set[int]:
    """The versions this file has applied; none for a new file, which has no ``_migrations`` table yet."""
    exists = cursor.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = '_migrations'"
    ).fetchall()[0][0]
    if not exists:
        return set()
    return {version for (version,) in cursor.execute("SELECT version FROM _migrations").fetchall()}


def unknown(applied: Collection[int]) -> set[int]:
    """Applied versions this CLEAR Review does not know: the file was written by a newer one."""
    return set(applied) - {version for version, _ in MIGRATIONS}


def pending(applied: Collection[int]) -> list[tuple[int, str]]:
    """The (version, SQL) pairs not applied yet, oldest first."""
    return [(version, sql) for version, sql in MIGRATIONS if version not in applied]


def apply(cursor: duckdb.DuckDBPyConnection, version: int, sql: str, applied_at: dt.datetime) -> None:
    """Run one migration and record it in ``_migrations`` (created with the first), inside the caller's
    transaction: either both happen or neither."""
    cursor.execute("CREATE TABLE IF NOT EXISTS _migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMP)")
    cursor.execute(sql)
    cursor.execute("INSERT INTO _migrations VALUES (?, ?)", [version, applied_at])
