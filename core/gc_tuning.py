"""The garbage collector of a long-running Vigie process, set for batches.

An ingest batch makes tens of thousands of short-lived objects (decoded
payloads, alerts, readings, rows). With CPython's defaults a collection runs
every 700 allocations and, every so often, walks the whole heap: modules,
configuration, plugins, SQLAlchemy's mappers and compiled statements, none
of which will ever be garbage. Measured on the ingestion benchmark's
pipeline (docs/performance.md), that walk cost about a fifth of the CPU.
"""

from __future__ import annotations

import gc

# Allocations between two young-generation collections (CPython: 700).
YOUNG_THRESHOLD = 10_000


def tune_for_service() -> None:
    """Call once the process has started (runtime opened, plugins loaded).

    What exists now is moved out of the collector's sight (``gc.freeze``:
    kept alive, never scanned again), and young collections run less often.
    Reference cycles are still collected; only their timing changes. Not for
    test processes, which open and drop many runtimes: frozen objects are
    never freed.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
