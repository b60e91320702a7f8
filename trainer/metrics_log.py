"""Run metrics: JSON lines and CSV files always, W&B (offline by default) optionally; PNG curves."""
from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any, Optional

from trainer.config import LoggerConfig, typed


def _clean(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsLog:
    """Appends ``{"step": s, **metrics}`` records per kind ("train", "eval", ...) to
    ``<dir>/metrics.jsonl`` (one JSON object per line, with a "kind" field) and to
    ``<dir>/<kind>.csv`` (wide: one column per metric; rewritten from the JSON lines when a new
    metric appears). Optionally mirrors everything to W&B."""

    def __init__(self, directory: str | os.PathLike, cfg: Any = None, run_config: Optional[dict] = None,
                 resume_id: Optional[str] = None):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.jsonl = self.dir / "metrics.jsonl"
        self.cfg = typed(LoggerConfig, cfg)
        self._columns: dict[str, list[str]] = {}
        self.wandb_run = None
        if self.cfg.name == "wandb":
            self.wandb_run = self._init_wandb(run_config or {}, resume_id)
        elif self.cfg.name not in ("none", "csv", "json"):
            raise ValueError(f"unknown logger {self.cfg.name!r} (none | wandb)")

    def _init_wandb(self, run_config: dict, resume_id: Optional[str]):
        import wandb

        os.environ.setdefault("WANDB_SILENT", "true")
        wandb_dir = Path(self.cfg.dir) if self.cfg.dir else self.dir
        wandb_dir.mkdir(parents=True, exist_ok=True)
        return wandb.init(
            project=self.cfg.project,
            entity=self.cfg.entity,
            name=self.cfg.run_name,
            tags=list(self.cfg.tags),
            mode=self.cfg.mode,
            dir=str(wandb_dir),
            config=run_config,
            id=resume_id,
            resume="allow" if resume_id else None,
            reinit=True,
        )

    @property
    def wandb_id(self) -> Optional[str]:
        return None if self.wandb_run is None else self.wandb_run.id

    def log(self, kind: str, step: int, metrics: dict[str, Any]) -> None:
        record = {"kind": kind, "step": int(step), **{k: _clean(v) for k, v in metrics.items()}}
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(record) + "\n")
        self._write_csv(kind, record)
        if self.wandb_run is not None:
            self.wandb_run.log({f"{kind}/{k}": v for k, v in record.items() if k not in ("kind", "step")
                                and isinstance(v, (int, float))}, step=int(step))

    def _write_csv(self, kind: str, record: dict) -> None:
        path = self.dir / f"{kind}.csv"
        row = {k: v for k, v in record.items() if k != "kind" and not isinstance(v, (dict, list))}
        columns = self._columns.get(kind)
        if columns is None and path.exists():
            with open(path, newline="") as f:
                columns = next(csv.reader(f), None)
        if columns is not None and set(row) <= set(columns):
            with open(path, "a", newline="") as f:
                csv.DictWriter(f, columns, restval="").writerow(row)
            self._columns[kind] = columns
            return
        records = [r for r in self.records() if r.get("kind") == kind]
        columns = ["step"] + sorted({k for r in records for k, v in r.items()
                                     if k not in ("kind", "step") and not isinstance(v, (dict, list))})
        tmp = path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, columns, restval="", extrasaction="ignore")
            writer.writeheader()
            for r in records:
                writer.writerow(r)
        os.replace(tmp, path)
        self._columns[kind] = columns

    def records(self) -> list[dict]:
        if not self.jsonl.exists():
            return []
        with open(self.jsonl) as f:
            return [json.loads(line) for line in f if line.strip()]

    def summary(self, metrics: dict[str, Any]) -> None:
        """Final figures: ``<dir>/summary.json`` and the W&B run summary."""
        clean = {k: _clean(v) for k, v in metrics.items()}
        (self.dir / "summary.json").write_text(json.dumps(clean, indent=2, default=str))
        if self.wandb_run is not None:
            for k, v in clean.items():
                self.wandb_run.summary[k] = v

    def close(self) -> None:
        if self.wandb_run is not None:
            self.wandb_run.finish()
            self.wandb_run = None


def plot_curves(metrics_jsonl: str | os.PathLike, out_png: str | os.PathLike) -> Optional[Path]:
    """Training loss / accuracy and evaluation accuracies against the step, as a PNG."""
    path = Path(metrics_jsonl)
    if not path.exists():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    train = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") == "eval"]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    if train:
        ax_loss.plot([r["step"] for r in train], [r.get("loss") for r in train], label="train loss")
        ax_acc.plot([r["step"] for r in train], [r.get("accuracy") for r in train], label="train (batch)", alpha=0.6)
    # one colour per test set, one line style per metric, so a dozen curves stay readable
    styles = {"top1": "-", "crystal_system_accuracy": "--", "balanced_accuracy": ":"}
    sets = sorted({k.split("/", 1)[0] for r in evals for k in r if "/" in k and k.split("/", 1)[1] in styles})
    colours = plt.get_cmap("tab10")
    for i, name in enumerate(sets):
        for metric, style in styles.items():
            key = f"{name}/{metric}"
            pts = [(r["step"], r[key]) for r in evals if isinstance(r.get(key), (int, float))]
            if pts:
                ax_acc.plot(*zip(*pts), style, marker="o", color=colours(i % 10),
                            label=name if metric == "top1" else None)
    if sets:
        for metric, style in styles.items():  # a key to the line styles
            ax_acc.plot([], [], style, color="grey", label=metric.replace("_", " "))
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss")
    ax_acc.set_xlabel("step")
    ax_acc.set_ylabel("accuracy")
    for ax in (ax_loss, ax_acc):
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    out = Path(out_png)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
