"""Run alibi-detect's online MMD and CVM detectors on saved streams (own venv, numpy<2).

Called by bench_detectors_peers.py: ``python _alibi_peer.py IN.npz OUT.json``. The input holds
``ref`` and, per scenario and repetition, a stream ``s{k}_{rep}`` whose change starts at row
``change``; the output gives each detector's delay (events after the change, None = missed)
and its false alarms before the change.
"""

from __future__ import annotations

import json
import sys

import numpy as np
from alibi_detect.cd import CVMDriftOnline, MMDDriftOnline


def run(det, stream: np.ndarray, change: int) -> tuple[int | None, int]:
    det.reset_state()
    false = 0
    for t, x in enumerate(stream):
        if det.predict(x, return_test_stat=False)["data"]["is_drift"]:
            if t < change:
                false += 1
                det.reset_state()
                continue
            return t - change + 1, false
    return None, false


def main() -> None:
    data = np.load(sys.argv[1])
    ert, change = int(data["ert"]), int(data["change"])
    out: dict[str, dict[str, list]] = {}
    names = sorted({k.split("_")[0] for k in data.files if k.startswith("s")})
    for name in names:
        ref = data[f"ref_{name[1:]}"].astype(np.float32)
        dets = {
            "alibi-detect MMDDriftOnline (w=20)": MMDDriftOnline(
                ref[:1000],
                ert=ert,
                window_size=20,
                backend="pytorch",
                n_bootstraps=3000,
                verbose=False,
            ),
            # Its per-feature threshold needs at least ert * d bootstrap runs.
            "alibi-detect CVMDriftOnline (w=20,50)": CVMDriftOnline(
                ref[:1000],
                ert=ert,
                window_sizes=[20, 50],
                n_bootstraps=ert * ref.shape[1] + 1000,
                verbose=False,
            ),
        }
        reps = sorted(k for k in data.files if k.startswith(name + "_"))
        for dname, det in dets.items():
            got = [run(det, data[k].astype(np.float32), change) for k in reps]
            out.setdefault(name, {})[dname] = got
            print(name, dname, got, flush=True)
    with open(sys.argv[2], "w") as fh:
        json.dump(out, fh)


if __name__ == "__main__":
    main()
