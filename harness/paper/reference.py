"""The paper's printed numbers that are not rows of its tables: Figure 2 (right)'s small table
of d_dis / d_KL between members (CIFAR-10, WRN-28-10, M = 3, S = 0.8), kept as printed in
`reports/reference/freetickets_figures.csv` beside the tables' reference files (the three are
described in reports/reference/README.md)."""
from pathlib import Path

import pandas as pd

from harness.core.errors import UserError

FIGURES = Path(__file__).resolve().parents[2] / "reports" / "reference" / "freetickets_figures.csv"


def figure_reference(figure: int, panel: str, path: Path = FIGURES) -> pd.DataFrame:
    """The printed numbers of one figure panel: dataset, model, method, metric, value, note."""
    if not path.is_file():
        raise UserError(f"the paper's reference figures {path} are missing")
    frame = pd.read_csv(path, dtype={"note": str}).fillna({"note": ""})
    return frame[(frame.figure == figure) & (frame.panel == panel)].reset_index(drop=True)


def figure_2_right(path: Path = FIGURES) -> dict[str, dict[str, float]]:
    """{method: {'disagreement': d_dis, 'kl': d_KL}} as Figure 2 (right) prints them."""
    printed: dict[str, dict[str, float]] = {}
    for row in figure_reference(2, "right", path).itertuples():
        printed.setdefault(row.method, {})[row.metric] = float(row.value)
    return printed
