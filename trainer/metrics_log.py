"""Run metrics: JSON lines and CSV files always, W&B (offline by default) optionally; PNG curves."""
from __future__ import annotations

import csv
import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Optional

from trainer.config import LoggerConfig, typed

log = logging.getLogger(__name__)
JSONL = "metrics.jsonl"


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
        self.jsonl = self.dir / JSONL
        repair_torn_tails(self.dir)  # appending after a torn line would corrupt the next record too
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
        run = wandb.init(
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
        # Each kind of record has its own step axis ("train/step", "eval/step"): evaluations arrive
        # after later training steps were logged, and W&B drops history rows logged with an
        # explicit step= lower than one it has already seen.
        self._wandb_kinds: set[str] = set()
        return run

    def _wandb_step_metric(self, kind: str) -> str:
        """``<kind>/step``, declared once per kind as the step axis of ``<kind>/*``."""
        key = f"{kind}/step"
        if kind not in self._wandb_kinds:
            self.wandb_run.define_metric(key)
            self.wandb_run.define_metric(f"{kind}/*", step_metric=key)
            self._wandb_kinds.add(kind)
        return key

    @property
    def wandb_id(self) -> Optional[str]:
        return None if self.wandb_run is None else self.wandb_run.id

    def log(self, kind: str, step: int, metrics: dict[str, Any]) -> None:
        record = {"kind": kind, "step": int(step), **{k: _clean(v) for k, v in metrics.items()}}
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(record) + "\n")
        self._write_csv(kind, record)
        if self.wandb_run is not None:
            row = {f"{kind}/{k}": v for k, v in record.items() if k not in ("kind", "step")
                   and isinstance(v, (int, float)) and not isinstance(v, bool)}
            row[self._wandb_step_metric(kind)] = int(step)
            self.wandb_run.log(row)  # no step=: W&B's own counter only orders the rows

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
        return read_records(self.jsonl)

    def summary(self, metrics: dict[str, Any]) -> None:
        """Final figures: ``<dir>/summary.json`` and the W&B run summary."""
        clean = {k: _clean(v) for k, v in metrics.items()}
        (self.dir / "summary.json").write_text(json.dumps(clean, indent=2, default=str))
        if self.wandb_run is not None:
            for k, v in clean.items():
                self.wandb_run.summary[k] = v

    def close(self) -> None:
        if self.wandb_run is not None:
            try:
                run_dir = Path(self.wandb_run.dir).parent  # <dir>/wandb/offline-run-<time>-<id>
            except Exception:  # a disabled run has no folder
                run_dir = Path("")
            offline = run_dir.name.startswith("offline-run-")
            self.wandb_run.finish()
            self.wandb_run = None
            if offline:
                message = (f"W&B offline run written to {run_dir}; upload it with: "
                           f"wandb login && wandb sync {run_dir}")
                log.info(message)
                print(message, flush=True)


# ------------------------------------------------------------------------- reading and truncating
def read_records(path: str | os.PathLike) -> list[dict]:
    """The records of a ``metrics.jsonl`` file ([] when it does not exist).

    A last line that is not valid JSON (a write cut short by a kill) is dropped with a warning; an
    invalid line anywhere else is corruption and raises ``ValueError`` naming the file and line.
    """
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_text(errors="replace").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            if i == len(lines) - 1:
                log.warning("%s: dropped a torn last line (%d characters, an interrupted write)", path, len(line))
                break
            raise ValueError(f"{path}:{i + 1}: not a JSON record ({err})") from err
    return records


def _cut_to_last_newline(path: Path) -> bool:
    """Remove an unterminated last line (a write cut short by a kill); True when one was removed."""
    with open(path, "rb+") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        if size == 0:
            return False
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return False
        # the last newline before the end (files here are small: read the tail in chunks)
        pos, keep = size, 0
        while pos > 0:
            start = max(0, pos - 65536)
            f.seek(start)
            chunk = f.read(pos - start)
            idx = chunk.rfind(b"\n")
            if idx >= 0:
                keep = start + idx + 1
                break
            pos = start
        f.truncate(keep)
    log.warning("%s: dropped a torn last line (%d bytes, an interrupted write)", path, size - keep)
    return True


def _metric_csvs(directory: Path) -> list[Path]:
    """The ``<kind>.csv`` tables of a run folder: train and eval, and any other kind in ``metrics.jsonl``."""
    kinds = {"train", "eval"} | {str(r.get("kind")) for r in read_records(directory / JSONL) if r.get("kind")}
    return sorted(p for p in (directory / f"{kind}.csv" for kind in kinds) if p.is_file())


def repair_torn_tails(directory: str | os.PathLike) -> None:
    """Cut an unterminated last line off ``metrics.jsonl`` and the ``<kind>.csv`` files of a run
    folder, and a last JSON line that does not parse, each with a logged warning."""
    directory = Path(directory)
    jsonl = directory / JSONL
    if jsonl.exists():
        _cut_to_last_newline(jsonl)
        lines = jsonl.read_text(errors="replace").splitlines(keepends=True)
        if lines and lines[-1].strip():
            try:
                json.loads(lines[-1])
            except json.JSONDecodeError:
                log.warning("%s: dropped a last line that is not JSON (%d characters)", jsonl, len(lines[-1]))
                _atomic_write(jsonl, "".join(lines[:-1]))
    for path in _metric_csvs(directory):
        _cut_to_last_newline(path)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _step_of(value: Any) -> Optional[int]:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def truncate_metrics(directory: str | os.PathLike, step: int) -> dict[str, int]:
    """Keep only the rows with ``step <= step`` in a run folder's ``metrics.jsonl`` and
    ``<kind>.csv`` files (``train.csv``, ``eval.csv``, ...), so a run resumed from the checkpoint
    of step ``step`` does not log the steps after it twice. Torn last lines are dropped too.

    Returns the number of rows removed per file name (files left unchanged are not listed).
    """
    directory = Path(directory)
    step = int(step)
    repair_torn_tails(directory)
    removed: dict[str, int] = {}
    jsonl = directory / JSONL
    if jsonl.exists():
        records = read_records(jsonl)
        kept = [r for r in records if _step_of(r.get("step")) is None or _step_of(r.get("step")) <= step]
        if len(kept) != len(records):
            _atomic_write(jsonl, "".join(json.dumps(r) + "\n" for r in kept))
            removed[jsonl.name] = len(records) - len(kept)
    for path in _metric_csvs(directory):
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        if not rows or "step" not in rows[0]:
            continue  # not a metrics table
        header, body = rows[0], rows[1:]
        col = header.index("step")
        kept_rows = [r for r in body if len(r) == len(header) and _step_of(r[col]) is not None
                     and _step_of(r[col]) <= step]
        if len(kept_rows) != len(body):
            tmp = path.with_name(f".{path.name}.tmp")
            with open(tmp, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(header)
                writer.writerows(kept_rows)
            os.replace(tmp, path)
            removed[path.name] = len(body) - len(kept_rows)
    if removed:
        log.info("resuming at step %d in %s: removed the rows of later steps (%s)", step, directory,
                 ", ".join(f"{n} from {name}" for name, n in removed.items()))
    return removed


def plot_curves(metrics_jsonl: str | os.PathLike, out_png: str | os.PathLike) -> Optional[Path]:
    """Training loss / accuracy and evaluation accuracies against the step, as a PNG."""
    path = Path(metrics_jsonl)
    if not path.exists():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_records(path)
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
