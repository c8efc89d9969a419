"""NannyML CBPE on saved binary scores (own venv): ``python _nannyml_peer.py IN.npz OUT.json``.

Writes CBPE's estimated accuracy per chunk of the analysis scores.
"""

from __future__ import annotations

import json
import sys

import nannyml as nml
import numpy as np
import pandas as pd


def main() -> None:
    data = np.load(sys.argv[1])
    chunk = int(data["chunk"])

    def frame(p: np.ndarray, y: np.ndarray | None) -> pd.DataFrame:
        df = pd.DataFrame({"proba": p, "pred": (p >= 0.5).astype(int)})
        if y is not None:
            df["target"] = y
        return df

    ref = frame(data["ref_p"], data["ref_y"])
    ana = frame(data["ana_p"], None)
    est = nml.CBPE(
        y_pred_proba="proba",
        y_pred="pred",
        y_true="target",
        metrics=["accuracy"],
        chunk_size=chunk,
        problem_type="classification_binary",
    )
    est.fit(ref)
    res = est.estimate(ana).filter(period="analysis").to_df()
    values = res[("accuracy", "value")].tolist()
    with open(sys.argv[2], "w") as fh:
        json.dump([float(v) for v in values], fh)


if __name__ == "__main__":
    main()
