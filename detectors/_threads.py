"""One BLAS thread around the detectors' hot paths, whatever the environment says.

The matrices of one update (a batch of ~1000 rows times a few dozen columns) are far too small
for a BLAS thread pool: OpenBLAS starts its threads anyway and spends more time waking and
joining them than computing, so a detector in a default environment ran 2-3x slower per core
than with ``OPENBLAS_NUM_THREADS=1``. Limiting numpy's own BLAS to one thread for the length
of an update costs ~15 microseconds (one cached controller) and leaves the rest of the process
(a training thread with torch's own BLAS, say) alone: only the BLAS libraries that numpy and
scipy load are touched.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from threadpoolctl import ThreadpoolController

_lock = threading.Lock()
_controller: Any = None
# how many `single_blas_thread` blocks this thread is inside (only the outermost one acts)
_depth = threading.local()


def _blas() -> Any:
    """numpy's and scipy's BLAS controllers (all BLAS libraries if none can be told apart)."""
    global _controller
    with _lock:
        if _controller is None:
            blas = ThreadpoolController().select(user_api="blas")
            own = [
                c.filepath
                for c in blas.lib_controllers
                if "numpy" in c.filepath or "scipy" in c.filepath
            ]
            _controller = blas.select(filepath=own) if own else blas
        return _controller


@contextlib.contextmanager
def single_blas_thread() -> Iterator[None]:
    """Run the block with numpy's BLAS on one thread, restoring the previous count after.

    Example:
        >>> import numpy as np
        >>> with single_blas_thread():
        ...     float((np.ones((2, 2)) @ np.ones((2, 2)))[0, 0])
        2.0
    """
    if getattr(_depth, "n", 0):
        yield
        return
    with _blas().limit(limits=1):
        _depth.n = 1
        try:
            yield
        finally:
            _depth.n = 0
