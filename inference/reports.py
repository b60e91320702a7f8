"""PNG plots of an evaluation: top-k curve, crystal-system confusion matrix, per-space-group recall,
coverage-accuracy curve (matplotlib, Agg backend)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)
    return path


def plot_top_k(ks: Sequence[int], accuracy: Sequence[float], path: str | Path, title: str = "") -> Path:
    """Top-k accuracy against k."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot(list(ks), [100 * a for a in accuracy], "o-")
    for k, a in zip(ks, accuracy):
        if k in (1, 5, 10):
            ax.annotate(f"{100 * a:.0f}%", (k, 100 * a), textcoords="offset points", xytext=(0, 6), ha="center")
    ax.set_xlabel("k")
    ax.set_ylabel("top-k accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_xticks(list(ks))
    ax.grid(alpha=0.3)
    ax.set_title(title or "Top-k accuracy")
    return _save(fig, path)


def plot_confusion(matrix: np.ndarray, labels: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Row-normalised confusion matrix (rows: true, columns: predicted) with the counts written in."""
    plt = _pyplot()
    m = np.asarray(matrix, dtype=float)
    rows = m.sum(axis=1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    fig, ax = plt.subplots(figsize=(6.2, 5.2))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            if m[i, j]:
                ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center",
                        color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of true row")
    ax.set_title(title or "Confusion by crystal system")
    return _save(fig, path)


def plot_recall(space_groups: Sequence[int], recall: Sequence[float], support: Sequence[int], path: str | Path,
                title: str = "") -> Path:
    """Recall of each space group present in the set (bar width grows with the number of groups)."""
    plt = _pyplot()
    n = len(space_groups)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.22 * n + 1.5), 3.8))
    x = np.arange(n)
    ax.bar(x, [100 * r for r in recall], color="tab:blue")
    ax.set_xticks(x, [str(s) for s in space_groups], rotation=90, fontsize=7 if n > 30 else 9)
    ax.set_xlabel("space group (number of patterns above the bar)" if n <= 60 else "space group")
    if n <= 60:
        for xi, r, s in zip(x, recall, support):
            ax.text(xi, 100 * r + 1, str(int(s)), ha="center", va="bottom", fontsize=6)
    ax.set_ylabel("recall (%)")
    ax.set_ylim(0, 110)
    ax.set_title(title or "Per-space-group recall")
    return _save(fig, path)


def plot_coverage_accuracy(thresholds: Sequence[float], coverage: Sequence[float], accuracy: Sequence[float],
                           path: str | Path, threshold: float | None = None, title: str = "") -> Path:
    """Accuracy of the answered patterns against the fraction answered; the configured threshold is marked."""
    plt = _pyplot()
    cov = np.asarray(coverage, float)
    acc = np.asarray(accuracy, float)
    t = np.asarray(thresholds, float)
    ok = ~np.isnan(acc)
    fig, ax = plt.subplots(figsize=(5, 3.8))
    ax.plot(100 * cov[ok], 100 * acc[ok], "o-", ms=3)
    last = None
    for ti, c, a in zip(t[ok], cov[ok], acc[ok]):
        if np.isclose(ti * 10, round(ti * 10)) and ti > 0 and (c, a) != last:  # label each distinct point once
            ax.annotate(f"{ti:.1f}", (100 * c, 100 * a), textcoords="offset points", xytext=(4, 4), fontsize=7)
            last = (c, a)
    if threshold is not None and ok.any():
        i = int(np.argmin(np.abs(t - threshold)))
        if ok[i]:
            ax.plot([100 * cov[i]], [100 * acc[i]], "r*", ms=12, label=f"threshold {threshold:.2f}")
            ax.legend(loc="lower left")
    ax.set_xlabel("coverage: patterns answered (%)")
    ax.set_ylabel("top-1 accuracy of answered (%)")
    ax.set_xlim(-2, 102)
    ax.set_ylim(0, 105)
    ax.grid(alpha=0.3)
    ax.set_title(title or "Coverage vs accuracy over refusal thresholds")
    return _save(fig, path)


AXIS_LABELS = {"two_theta": "2θ (deg)", "inverse_d": "1/d (1/Å)", "r": "r (Å)"}


def plot_prediction(grid: np.ndarray, axis: str, values: np.ndarray, mask: np.ndarray,
                    candidates: Sequence[tuple[str, float]], threshold: float, path: str | Path,
                    title: str = "", crystal_system: str = "") -> Path:
    """One pattern's answer at a glance: the input as the model reads it (``values`` on ``grid``, the part
    the scan does not cover shaded) beside the candidates' probabilities (``(label, probability)``, most
    probable first) with the refusal threshold marked; ``crystal_system`` (e.g. "orthorhombic 86 %,
    answered") is added to the verdict when the space group is refused."""
    plt = _pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [2.4, 1]})
    grid, values, mask = np.asarray(grid, float), np.asarray(values, float), np.asarray(mask, bool)
    ax.plot(grid, values, lw=0.7, color="black")
    edges = np.flatnonzero(np.diff(np.r_[0, (~mask).astype(int), 0]))  # start/stop pairs of uncovered runs
    for lo, hi in zip(edges[::2], edges[1::2]):
        ax.axvspan(grid[lo], grid[hi - 1], color="0.85", lw=0, label="not covered by the scan" if lo == edges[0] else None)
    if (~mask).any():
        ax.legend(loc="upper right", fontsize=8)
    ax.set_xlim(grid[0], grid[-1])
    ax.set_xlabel(AXIS_LABELS.get(axis, axis))
    ax.set_ylabel("model input")
    ax.set_title(title or "pattern as the model reads it", fontsize=10)
    labels = [c[0] for c in candidates][::-1]
    probs = [100 * c[1] for c in candidates][::-1]
    colours = ["tab:blue" if p >= 100 * threshold else "tab:gray" for p in probs]
    bx.barh(range(len(probs)), probs, color=colours)
    bx.set_yticks(range(len(probs)), labels, fontsize=8)
    bx.axvline(100 * threshold, color="tab:red", ls="--", lw=1, label=f"refusal threshold {threshold:.2f}")
    bx.set_xlim(0, 100)
    bx.set_xlabel("probability (%)")
    bx.legend(loc="lower right", fontsize=8)
    refused = bool(probs) and probs[-1] < 100 * threshold
    verdict = "answered" if not refused else ("space group refused; crystal system\n" + crystal_system if crystal_system
                                               else "refused: a guess")
    bx.set_title(verdict, fontsize=10)
    return _save(fig, path)
