"""The ``ray`` scoring backend: a Ray Data job driven by the worker process, and the replicas that score its blocks.

The worker process (worker.py) stays the one thing the owner starts, follows and cancels. With ``backend: ray`` in
job.json it loads no model itself; ``score_batches`` here

1. connects to Ray (``RayOptions.address``) or starts it on this machine with its cores (no dashboard);
2. puts the rows to score into the object store as Arrow blocks of one batch each (length-sorted first, as
   ``engine.score_batches`` does, so a block's rows pad alike);
3. maps the blocks over an actor pool of ``replicas`` ``Replica`` actors (``num_gpus = gpus_per_replica``), each of
   which loads the model once and scores a block with ``engine.score_batches``, the loop the local worker runs (row
   isolation included), and returns its score records;
4. yields each block's records to the worker, which writes them as the same atomic hand-off chunks and progress.

Replicas never touch the run directory, so they can run on any node of a cluster: only the driver writes files.
A replica that dies (killed, node lost, preempted) is restarted by Ray and the block it held is retried
(``max_restarts=-1``, ``max_task_retries=MAX_BLOCK_RETRIES``); a block's records reach the driver once, from the
attempt that finished. A driver that dies takes its Ray job, and so its replicas, with it; starting the run again
skips the rows in chunks and in the database, as for the local worker, and the owner's idempotent ingest keeps each
row scored once whatever was delivered twice.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence

from clear_core import handoff
from clear_core.backends import RayOptions
from clear_core.confidence import ScoringConfig
from clear_core.errors import ClearError

# A block whose replica dies this many times in a row fails the run (a row that crashes the process, not a lost
# node), instead of being retried for ever; a replica itself is restarted as often as it dies.
MAX_BLOCK_RETRIES = 3
REPLICA_CLASS = "Replica"  # Ray Data names its actors MapWorker(MapBatches(Replica))


class RayClusterError(ClearError):
    """Ray could not be reached or cannot place the replicas asked for; the message says what to change."""


class Replica:
    """One model replica (a Ray actor): loads the model once, then scores each block it is given with
    ``engine.score_batches``, the local worker's loop, and returns one JSON score record per row."""

    def __init__(
        self, model: str, device: str, params: dict, threads: int, form: str | None = None, pool: list | None = None
    ):
        import torch

        from clear_core.engine import choose_examples
        from clear_core.form import FormModel
        from clear_core.model import load_model

        torch.set_num_threads(max(1, threads))
        self.lm = load_model(model, device)
        self.config = ScoringConfig.from_params(params)
        self.form = FormModel.from_json(form) if form else None  # the dataset's form model travels as JSON text
        # every replica picks the same examples from the same pool (engine.choose_examples is deterministic)
        self.examples = choose_examples(self.lm, pool or [], self.config, self.form)
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, block):
        import pyarrow as pa

        from clear_core.engine import score_batches

        rows = [
            {**row, "prompt_messages": json.loads(row["prompt_messages"])} for row in block.to_pylist()
        ]  # messages travel as JSON text: Arrow needs no struct schema for them
        batches = score_batches(self.lm, rows, self.config, form=self.form, examples=self.examples)
        records = [record for batch in batches for record in batch]
        return pa.table(
            {
                "row_index": [int(r["row_index"]) for r in records],
                "record": [json.dumps(r, ensure_ascii=True) for r in records],
                "replica": [self.name] * len(records),
                "device": [str(self.lm.device)] * len(records),
            }
        )


def score_batches(
    job: dict,
    rows: Sequence[dict],
    config: ScoringConfig,
    *,
    where: dict,
    ready: Callable[[], None] = lambda: None,
    stop_requested: Callable[[], bool] = lambda: False,
) -> Iterator[list[dict]]:
    """Score ``rows`` on Ray, yielding each block's score records as the replicas finish it (in no fixed order).

    ``where`` is kept up to date with ``device``, ``replicas`` (asked for) and ``replicas_alive`` for progress.json;
    ``ready()`` is called once the job is submitted. ``stop_requested`` is asked between blocks and raises
    ``handoff.Cancelled``. Ray is shut down (or disconnected) however the iteration ends.
    """
    if not rows:
        ready()
        return
    options = RayOptions.from_job(job.get("backend_options"))
    ray = connect(options)
    try:
        replicas, cpus = placement(ray, options)
        where.update(device="starting replicas", replicas=replicas, replicas_alive=0)
        dataset = _dataset(ray, rows, config, options, job, replicas, cpus)
        ready()
        job_id = ray.get_runtime_context().get_job_id()
        for block in dataset.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=0):
            if stop_requested():
                raise handoff.Cancelled()
            where.update(device=", ".join(sorted(set(block.column("device").to_pylist()))))
            where["replicas_alive"] = replicas_alive(ray, job_id)
            yield [json.loads(text) for text in block.column("record").to_pylist()]
    except Exception as exc:
        cause = _users_error(exc)
        if cause is exc:
            raise
        raise cause from exc
    finally:
        ray.shutdown()


def connect(options: RayOptions):
    """``ray``, initialised: connected to ``options.address``, or a fresh local Ray on this machine's cores."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report: it would try the network
    try:
        import ray
    except ImportError as exc:
        raise RayClusterError(
            f"Ray is not installed here ({exc}). Install it with `pip install 'ray[data]==2.60.0'` (`make setup` "
            "does), or score with the local engine."
        ) from exc

    common = {"log_to_driver": True, "logging_level": logging.WARNING, "configure_logging": True}
    # replicas on other nodes get the driver's offline setting; local ones inherit the environment anyway
    runtime_env = {"env_vars": {"HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}}
    started = time.time()
    try:
        if options.address:
            ray.init(address=options.address, runtime_env=runtime_env, **common)
        else:
            # "local": a new instance even when RAY_ADDRESS or a `ray start` on this machine would be found
            ray.init(address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False, **common)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {options.address!r}" if options.address else "a local Ray instance"
        raise RayClusterError(
            f"Could not connect to {where}: {exc}. Check that `ray start --head` runs there (or leave --ray-address "
            "out to start Ray on this machine)."
        ) from exc
    print(f"clear-ray: connected to Ray in {time.time() - started:.1f} s: {ray.cluster_resources()}", file=sys.stderr)
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False  # worker.log gets our progress.json instead of a bar every few seconds
    context.print_on_execution_start = False
    return ray


def placement(ray, options: RayOptions) -> tuple[int, float]:
    """(replicas, CPUs per replica) for this cluster. Replicas default to 1 on CPUs, else as many as the GPUs allow;
    CPU replicas share the cluster's CPUs (at most one node's worth each), a GPU replica takes one CPU. A request the
    cluster cannot hold is refused when Ray runs on this machine; a remote cluster may be autoscaling, so there it
    is only noted in worker.log."""
    resources = ray.cluster_resources()
    cpus, gpus = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
    per_replica = options.gpus_per_replica
    replicas = options.replicas or (max(1, math.floor(gpus / per_replica)) if per_replica else 1)
    if per_replica:
        threads = 1.0
        if replicas * per_replica > gpus:
            _too_big(
                options,
                f"{replicas} replicas x {per_replica:g} GPUs need {replicas * per_replica:g} GPUs; "
                f"the cluster has {gpus:g}",
            )
    else:
        node_cpus = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=cpus)
        threads = min(cpus / replicas, node_cpus)
        threads = math.floor(threads) if threads >= 1 else round(threads, 2)
        if threads <= 0:
            _too_big(options, f"the cluster has {cpus:g} CPUs for {replicas} replicas")
    return replicas, threads


def _too_big(options: RayOptions, what: str) -> None:
    if not options.address:
        raise RayClusterError(
            f"Ray on this machine cannot hold the replicas asked for: {what}. Ask for fewer "
            "--replicas or --gpus-per-replica, or pass --ray-address of a larger cluster."
        )
    print(f"clear-ray: {what}; replicas wait until the cluster has room", file=sys.stderr)


def _dataset(ray, rows, config: ScoringConfig, options: RayOptions, job: dict, replicas: int, cpus: float):
    """The rows as Arrow blocks of one batch each, mapped over the replicas' actor pool."""
    import pyarrow as pa

    per_block = config.batch_size
    if options.gpus_per_replica:  # a GPU replica takes the rows per call engine.for_device gives it
        from clear_core.engine import GPU_ROWS_PER_CALL

        per_block = max(per_block, GPU_ROWS_PER_CALL)
    ordered = sorted(rows, key=lambda r: len(r["prompt"]) + len(r["response"]))  # engine.score_batches' order
    table = pa.table(
        {
            "row_index": [int(r["row_index"]) for r in ordered],
            "prompt_messages": [json.dumps(r["prompt_messages"], ensure_ascii=True) for r in ordered],
            "prompt": [r["prompt"] for r in ordered],
            "response": [r["response"] for r in ordered],
        }
    )
    blocks = [table.slice(start, per_block) for start in range(0, len(table), per_block)]
    with warnings.catch_warnings():
        # Ray 2.60 deprecates passing actor options as keywords but names no parameter for these two yet
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        return ray.data.from_arrow(blocks).map_batches(
            Replica,
            fn_constructor_args=(
                job["model"],
                job.get("device", "auto"),
                job["params"],
                max(1, int(cpus)),
                job.get("form"),
                job.get("example_pool"),
            ),
            batch_size=None,  # a block is one batch: one task per block, retried alone when its replica dies
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=replicas),
            num_cpus=cpus,
            max_restarts=-1,
            max_task_retries=MAX_BLOCK_RETRIES,
            **({"num_gpus": options.gpus_per_replica} if options.gpus_per_replica else {}),
        )


def replicas_alive(ray, job_id: str) -> int | None:
    """How many of this job's replicas are alive now (None when Ray's actor table cannot be read)."""
    try:
        from ray._private import state  # the actor table, read from the cluster's GCS (no dashboard needed)

        actors = state.actors(job_id=ray.JobID.from_hex(job_id), actor_state_name="ALIVE").values()
    except Exception:  # noqa: BLE001 - a private API: progress goes on without the count
        return None
    return sum(1 for a in actors if REPLICA_CLASS in str(a.get("ActorClassName", "")))


def _users_error(exc: BaseException) -> BaseException:
    """The ClearError inside a Ray error (e.g. a replica's ModelLoadError), so the run's message is its own and not
    a remote traceback; any other exception as it is."""
    if isinstance(exc, (ClearError, handoff.Cancelled)):
        return exc
    seen: BaseException | None = exc
    for _ in range(10):
        cause = getattr(seen, "cause", None) or getattr(seen, "__cause__", None)
        if cause is None:
            break
        if isinstance(cause, ClearError):
            return cause
        seen = cause
    return exc
