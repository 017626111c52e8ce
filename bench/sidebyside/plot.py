"""One PNG: for each replay, replicas and pending of every system on one time axis."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: write files only
import matplotlib.pyplot as plt

from sidebyside.metrics import Sample

COLORS = {"ours": "tab:blue", "keda": "tab:red", "keda-5s": "tab:orange", "at-max": "tab:gray"}
# KEDA's two runs often coincide: the default one drawn wider, so both stay visible.
WIDTHS = {"keda": 3.0}


def plot(runs: dict[str, dict[str, list[Sample]]], path: Path) -> Path:
    """`runs`: replay -> system -> its samples. Two rows per replay sharing the time axis:
    pods (solid) and desired replicas (dotted), then pending jobs in the system's queue."""
    figure, axes = plt.subplots(
        2 * len(runs), 1, figsize=(11, 4.2 * len(runs)), sharex=False, squeeze=False
    )
    for row, (replay, systems) in enumerate(runs.items()):
        replicas, pending = axes[2 * row][0], axes[2 * row + 1][0]
        for system, samples in systems.items():
            color = COLORS.get(system)
            t = [s.t for s in samples]
            replicas.step(t, [s.pods for s in samples], where="post", color=color, label=system)
            replicas.step(t, [s.desired for s in samples], where="post", color=color, linestyle=":")
            pending.step(t, [s.pending for s in samples], where="post", color=color, label=system)
        replicas.set_title(f"{replay}: pods (solid), desired replicas (dotted)")
        replicas.set_ylabel("replicas")
        replicas.legend(loc="upper right")
        pending.set_title(f"{replay}: pending jobs (RQ queue list)")
        pending.set_ylabel("pending")
        pending.set_xlabel("seconds since the replay started")
        pending.sharex(replicas)
        for axis in (replicas, pending):
            axis.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path
