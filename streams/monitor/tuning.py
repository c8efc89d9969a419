"""Process settings a monitor worker makes once, after start-up, on a small machine.

* **One BLAS thread.** The detectors' matrix products are small (a micro-batch times a few
  hundred Fourier features); a second OpenBLAS thread buys nothing there and competes with
  the Kafka client's own thread on a 2-core host. Measured on the MonitorStep alone with
  Arrow batches (2 cores, shared): 120-220k rows/s with the default BLAS threads, 780-800k
  with one (BENCHMARKS, "Ingest (monitor step)").
* **gc.freeze() after start-up.** Moves the objects of imports, the store and the fitted
  reference out of the collector's generations, so the collections that the hot path's
  short-lived objects trigger do not walk them again. No gain measurable on the step alone
  (within the noise of a shared machine); kept because it cannot cost throughput and the
  issue's plain-loop measurement hinted at one.

>>> tune_process(blas_threads=1, freeze_gc=False)
1
"""

from __future__ import annotations

import gc

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

__all__ = ["tune_process"]


def tune_process(*, blas_threads: int | None = 1, freeze_gc: bool = True) -> int | None:
    """Limit BLAS to ``blas_threads`` (None: leave it) and freeze the heap built so far;
    call it once the worker has started (store open, reference fitted). Returns the BLAS
    thread count now in force (None when no BLAS library is loaded)."""
    np.dot(np.ones((2, 2)), np.ones((2, 2)))  # BLAS is loaded, so the limit reaches it
    if blas_threads is not None:
        threadpool_limits(limits=blas_threads, user_api="blas")
    if freeze_gc:
        gc.collect()
        gc.freeze()
    counts = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    return max(counts) if counts else None
