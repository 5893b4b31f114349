"""Builds a search word index in a child process (``Store._word_index``), so that the app server holds none of the
build's working memory (about 1.5 GB at 1M rows) and its pages do not wait on the build for Python's interpreter lock.

    python -m clear_core.index_builder FOLDER  < one Arrow IPC stream

Standard input carries the texts once, as an Arrow IPC stream of (row_index, the lowercased text columns). The words
and their edges are built as it arrives (``search_index.build``) while each batch is also written to a spool file
beside FOLDER, which the pairs of frequent words are then read from (``search_index.with_pairs``), memory-mapped; so
the server's database reads the text once. The index is saved into FOLDER (``WordIndex.save``: whole or not at all)
and the spool removed; the parent maps the index from there. The child runs at the lowest CPU priority: a search
can wait, a person's page cannot.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from clear_core import search_index


def _spooled(reader: pa.ipc.RecordBatchStreamReader, writer: pa.ipc.RecordBatchFileWriter) -> Iterator[pa.RecordBatch]:
    """The reader's batches, each also written to ``writer``."""
    for batch in reader:
        writer.write_batch(batch)
        yield batch


def build(source: pa.NativeFile, folder: Path) -> None:
    """Read the text stream from ``source`` and save its index, with pairs, into ``folder``."""
    prefix = f"{folder.name}.spool-"
    with tempfile.TemporaryDirectory(prefix=prefix, dir=folder.parent, ignore_cleanup_errors=True) as work:
        spool = Path(work) / "texts.arrow"
        reader = pa.ipc.open_stream(source)
        with pa.OSFile(str(spool), "wb") as sink, pa.ipc.new_file(sink, reader.schema) as writer:
            index = search_index.build(search_index.batch_columns(_spooled(reader, writer)))
        with pa.memory_map(str(spool)) as mapped:
            spooled = pa.ipc.open_file(mapped)
            batches = (spooled.get_batch(i) for i in range(spooled.num_record_batches))
            index = search_index.with_pairs(index, search_index.batch_columns(batches))
        index.save(folder)


def main(argv: list[str] | None = None) -> None:
    (folder,) = sys.argv[1:] if argv is None else argv
    if hasattr(os, "nice"):
        os.nice(19)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stopped by the server: the spool removed on the way out
    build(pa.PythonFile(sys.stdin.buffer, mode="r"), Path(folder))


if __name__ == "__main__":
    main()
