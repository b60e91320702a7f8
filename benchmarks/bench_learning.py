"""Learning scoreboard: held-out and synthetic top-1 against patterns seen and wall time, for one
or several training configs trained one after another on the same machine.

    python benchmarks/bench_learning.py                                  # the default run, 200k patterns
    python benchmarks/bench_learning.py --patterns 400000 --json learning.json
    python benchmarks/bench_learning.py --run baseline= --run adam_lr="optimizer.lr=3e-4" --out runs/
    python benchmarks/bench_learning.py model=resnet10 --run a= --run b="cluster.batch_size=128"

Each run is the real trainer (``trainer.run.run``) on ``conf/<--config>.yaml`` composed with
Hydra: the positional overrides (shared by every run), then the run's own overrides (``--run
NAME="OVERRIDES"``, shell-quoted, empty for the unchanged config). The benchmark then fixes, for
every run alike: ``trainer.max_steps`` (the last point), an evaluation at every point
(``evaluation.interval_steps`` = ``trainer.eval_every`` = the first point, in steps), the
in-process evaluator (``evaluation.backend=local``: synchronous, so every point is scored and
scores are deterministic) on ``evaluation.test_sets=[<--heldout>, synthetic]``, no intermediate
checkpoints, no resume, ``trainer.torch_threads=--threads`` and ``trainer.output_dir=<out>/<name>``.

Points: ``--points K`` points at N/2^(K-1), ..., N/2, N patterns (N = ``--patterns``; default 4
points: 25k, 50k, 100k, 200k). A point must be a whole number of steps of ``cluster.batch_size``
x ``trainer.num_workers`` patterns, so the first point is rounded to the nearest step count
(at least 1) and the others are its multiples 2, 4, ...; the patterns actually used are printed
and stored.

The scores are the trainer's own: the eval records of the run's ``metrics.jsonl`` at the point
steps (``<heldout>/top1`` and ``synthetic/top1``). ``seconds`` is the training wall time from
the start of training to the point, without the time spent scoring earlier points (the
evaluator is timed around its ``submit``); ``wall_seconds`` includes it. Data preparation, test
set simulation (cached after the first run) and stream start-up count only in ``setup_seconds``.
Before the measured runs, the first config trains ``--warmup`` steps unreported, so one-time costs
of the process (first calls, JIT compilation, building the caches) fall on no measured run. Runs
go one after another, each with ``--threads`` torch threads (default 0: its own ``cluster.trainer_cpus``,
as in ``python -m trainer``), so on a small machine they do not compete with each other.

Output: a rich table (one row per run, one column per point: held-out / synthetic top-1), a PNG
of held-out (solid) and synthetic (dashed) top-1 against patterns and against seconds, and with
``--json OUT``: for one run the run object, for several ``{"runs": [run, ...]}``. A run object::

    {"name": "baseline", "config": "train", "overrides": [...], "common_overrides": [...],
     "fixed": {"trainer.max_steps": ..., ...}, "heldout_set": "test_spglib", "batch_size": 64,
     "patterns_per_step": 64, "run_dir": "...", "setup_seconds": ..., "total_seconds": ...,
     "machine": {...}, "error": null,
     "points": [{"patterns": 25024, "step": 391, "seconds": ..., "wall_seconds": ...,
                 "eval_seconds": ..., "heldout_top1": 0.12, "synthetic_top1": 0.2}, ...]}

Without ``--out`` the run folders (metrics, curves, final checkpoint) are in a temporary folder
removed at the end, and the PNG goes next to ``--json`` (else ``bench_learning.png``); with
``--out DIR`` they stay in DIR/<name> with DIR/learning.png, and a DIR/<name> that already holds
files is refused (the trainer would append to its metrics).

A run that fails keeps its ``error`` (and no points); the others still run; the exit status is 1.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import shlex
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class BenchRun:
    """One config of the comparison: a folder-safe name and Hydra overrides of the base config."""

    name: str
    overrides: list[str] = field(default_factory=list)


def parse_run(text: str) -> BenchRun:
    """``NAME=OVERRIDES`` (overrides split like a shell line; empty: the config unchanged)."""
    name, sep, rest = text.partition("=")
    if not sep or not NAME.match(name):
        raise argparse.ArgumentTypeError(
            f"--run {text!r}: expected NAME=OVERRIDES with NAME a letter or digit, then letters, digits, '_', '.', '-' "
            "(e.g. baseline= or new=\"model=resnet10 optimizer.lr=3e-4\")")
    return BenchRun(name, shlex.split(rest))


def plan_steps(patterns: int, n_points: int, per_step: int) -> list[int]:
    """Steps of the points N/2^(K-1), ..., N: the first rounded to whole steps (>= 1), the rest its
    multiples 2, 4, ..., 2^(K-1)."""
    if patterns < 1 or n_points < 1 or per_step < 1:
        raise ValueError(f"need patterns, points and patterns per step >= 1 (got {patterns}, {n_points}, {per_step})")
    first = max(1, round(patterns / 2 ** (n_points - 1) / per_step))
    return [first * 2 ** i for i in range(n_points)]


def compose(config_name: str, overrides: list[str]):
    from hydra import compose as hydra_compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides))


class _Clock:
    """Wraps the run's evaluator: when each point was reached and how long it took to score."""

    def __init__(self, inner):
        self.inner = inner
        self.t0 = time.perf_counter()       # just before the training loop starts
        self.eval_total = 0.0
        self.at: dict[int, dict[str, float]] = {}

    def submit(self, state_dict, step: int):
        t = time.perf_counter()
        out = self.inner.submit(state_dict, step)
        spent = time.perf_counter() - t
        self.at[int(step)] = {"seconds": t - self.t0 - self.eval_total, "wall_seconds": t - self.t0,
                              "eval_seconds": spent}
        self.eval_total += spent
        return out

    def __getattr__(self, name):
        return getattr(self.inner, name)


@contextmanager
def _timed_evaluators(clocks: list):
    import cluster.evaluators as evaluators

    real = evaluators.make_evaluator

    def make(*args, **kwargs):
        inner = real(*args, **kwargs)
        if inner is None:
            return None
        clocks.append(_Clock(inner))
        return clocks[-1]

    with mock.patch.object(evaluators, "make_evaluator", make):
        yield


def machine() -> dict:
    import torch

    info = {"host": platform.node(), "python": platform.python_version(), "torch": torch.__version__,
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
    if hasattr(os, "getloadavg"):
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return info


def read_points(run_dir: Path, steps: list[int], per_step: int, heldout: str, clock: _Clock) -> list[dict]:
    """The points from the run's ``metrics.jsonl`` eval records and the clock."""
    path = run_dir / "metrics.jsonl"
    evals = {}
    for line in path.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            if r.get("kind") == "eval":
                evals[int(r["step"])] = r
    points = []
    for s in steps:
        r = evals.get(s)
        if r is None or s not in clock.at:
            raise RuntimeError(f"{path}: no evaluation at step {s} (evaluated steps: {sorted(evals)})")
        for key in (f"{heldout}/top1", "synthetic/top1"):
            if not isinstance(r.get(key), (int, float)):
                raise RuntimeError(f"{path}: step {s} has no {key!r}")
        points.append({"patterns": s * per_step, "step": s, **clock.at[s],
                       "heldout_top1": float(r[f"{heldout}/top1"]), "synthetic_top1": float(r["synthetic/top1"])})
    return points


def configure(bench: BenchRun, args, run_dir: Path, steps: Optional[list[int]] = None):
    """The composed config of ``bench`` with the benchmark's fixed settings; returns (cfg, steps,
    patterns per step, fixed settings). ``steps`` None: planned from ``--patterns`` and ``--points``."""
    from omegaconf import OmegaConf

    cfg = compose(args.config, [*args.overrides, *bench.overrides])
    per_step = int(cfg.cluster.batch_size) * max(1, int(cfg.trainer.num_workers))
    steps = steps or plan_steps(args.patterns, args.points, per_step)
    fixed = {"trainer.max_steps": steps[-1], "trainer.eval_every": steps[0], "evaluation.interval_steps": steps[0],
             "evaluation.enabled": True, "evaluation.backend": "local",
             "evaluation.test_sets": [args.heldout, "synthetic"], "trainer.final_eval": True,
             "trainer.checkpoint_every": 0, "trainer.resume": None, "trainer.torch_threads": args.threads,
             "trainer.output_dir": str(run_dir)}
    for key, value in fixed.items():
        OmegaConf.update(cfg, key, value, merge=False)
    return cfg, steps, per_step, fixed


def warm_up(bench: BenchRun, args, out_root: Path) -> None:
    """A short unreported run of ``bench``: one-time costs of the process (imports, first calls, JIT
    compilation, statistics and test-pattern caches) then fall on no measured run."""
    from trainer.run import run

    print(f"== warm-up: {bench.name}, {args.warmup} steps (not reported)", flush=True)
    t0 = time.perf_counter()
    try:
        run(configure(bench, args, out_root / "_warmup", [args.warmup])[0])
    except Exception as exc:  # the measured run of this config will report the error
        logging.getLogger(__name__).warning("warm-up run failed: %s: %s", type(exc).__name__, exc)
    shutil.rmtree(out_root / "_warmup", ignore_errors=True)
    print(f"== warm-up took {time.perf_counter() - t0:.0f} s", flush=True)


def run_one(bench: BenchRun, args, out_root: Path) -> dict:
    """Train ``bench`` to the last point and return its run object (module docstring)."""
    from trainer.run import run

    run_dir = out_root / bench.name
    record = {"name": bench.name, "config": args.config, "overrides": bench.overrides,
              "common_overrides": list(args.overrides), "heldout_set": args.heldout, "run_dir": str(run_dir),
              "error": None, "points": []}
    t0 = time.perf_counter()
    try:  # one broken config must not lose the others' results
        cfg, steps, per_step, fixed = configure(bench, args, run_dir)
        record.update(fixed=fixed, batch_size=int(cfg.cluster.batch_size), patterns_per_step=per_step)
        wanted = [args.patterns // 2 ** (args.points - 1 - i) for i in range(args.points)]
        got = [s * per_step for s in steps]
        print(f"== {bench.name}: {' '.join(bench.overrides) or '(config unchanged)'}; points {got} patterns "
              f"(steps {steps} of {per_step})" + ("" if got == wanted else f", rounded from {wanted}"), flush=True)
        clocks: list[_Clock] = []
        with _timed_evaluators(clocks):
            run(cfg)
        if not clocks:
            raise RuntimeError("the run built no evaluator (no test sets?)")
        record["points"] = read_points(run_dir, steps, per_step, args.heldout, clocks[-1])
        record["setup_seconds"] = clocks[-1].t0 - t0
    except Exception as exc:
        logging.getLogger(__name__).error("run %s failed: %s: %s", bench.name, type(exc).__name__, exc,
                                          exc_info=logging.getLogger(__name__).isEnabledFor(logging.DEBUG))
        record["error"] = f"{type(exc).__name__}: {exc}"
    record["total_seconds"] = time.perf_counter() - t0
    record["machine"] = machine()
    return record


def _count(n: int) -> str:
    return str(n) if n < 1000 else f"{n / 1000:.3g}k" if n < 10 ** 6 else f"{n / 10 ** 6:.3g}M"


def _pct(x: Optional[float]) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def print_table(runs: list[dict], heldout: str, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    n = max((len(r["points"]) for r in runs), default=0)
    table = Table(title=f"Top-1 (%) {heldout} / synthetic against patterns seen",
                  caption="s: training seconds to the last point (scoring excluded); "
                          f"Δ: last {heldout} top-1 minus the first run's (percentage points)")
    table.add_column("run")
    table.add_column("overrides", overflow="fold", max_width=40)
    for i in range(n):
        pats = sorted({r["points"][i]["patterns"] for r in runs if len(r["points"]) > i})
        table.add_column("/".join(_count(p) for p in pats), justify="right")
    for col in ("s", "Δ"):
        table.add_column(col, justify="right")
    ref = runs[0]["points"][-1]["heldout_top1"] if runs and runs[0]["points"] else None
    for r in runs:
        pts = r["points"]
        cells = [f"{_pct(p['heldout_top1'])} / {_pct(p['synthetic_top1'])}" for p in pts]
        cells += ["-"] * (n - len(pts))
        last = pts[-1] if pts else None
        delta = "-" if last is None or ref is None else f"{100 * (last['heldout_top1'] - ref):+.1f}"
        table.add_row(r["name"], " ".join(r["overrides"]) or "-", *cells,
                      (f"{last['seconds']:.0f}" if last['seconds'] >= 100 else f"{last['seconds']:.3g}")
                      if last else "failed", delta)
    console.print(table)
    for r in runs:
        if r["error"]:
            console.print(f"[red]{r['name']} failed:[/red] {r['error']}")


def plot(runs: list[dict], heldout: str, png: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    colours = plt.get_cmap("tab10")
    for i, r in enumerate(r for r in runs if r["points"]):
        pts = r["points"]
        for ax, x in zip(axes, ("patterns", "seconds")):
            xs = [p[x] for p in pts]
            ax.plot(xs, [100 * p["heldout_top1"] for p in pts], "-o", color=colours(i % 10), label=r["name"])
            ax.plot(xs, [100 * p["synthetic_top1"] for p in pts], "--", color=colours(i % 10), alpha=0.6)
    axes[0].set_xscale("log", base=2)
    axes[0].xaxis.set_major_formatter(FuncFormatter(lambda v, _: _count(int(round(v)))))
    axes[1].set_xscale("log")
    for ax, label in zip(axes, ("patterns seen", "training seconds (scoring excluded)")):
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"top-1 (%): {heldout} solid, synthetic dashed")
    if axes[0].lines:
        axes[0].legend(fontsize=8)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return png


def payload(runs: list[dict]) -> dict:
    """What ``--json`` writes: the run object itself for one run, ``{"runs": [...]}`` for several."""
    return runs[0] if len(runs) == 1 else {"runs": runs}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*", help="Hydra overrides applied to every run (before each run's own)")
    p.add_argument("--run", dest="runs", action="append", type=parse_run, default=[], metavar="NAME=OVERRIDES",
                   help="a config to compare (repeatable); default: one run 'default' with no overrides")
    p.add_argument("--config", default="train", help="config name in conf/ (default: train, i.e. python -m trainer)")
    p.add_argument("--patterns", type=int, default=200_000, help="patterns at the last point (default 200000)")
    p.add_argument("--points", type=int, default=4, help="points N/2^(K-1) ... N (default 4)")
    p.add_argument("--heldout", default="test_spglib",
                   help="held-out test set scored (evaluation.testsets: test_spglib, test_database, test_ordered)")
    p.add_argument("--warmup", type=int, default=2,
                   help="steps of an unreported warm-up run of the first config before the measured runs (0: none)")
    p.add_argument("--threads", type=int, default=0,
                   help="trainer.torch_threads of every run (default 0: each run's cluster.trainer_cpus)")
    p.add_argument("--out", type=Path, default=None, help="run folders go to OUT/<name> (default: a temporary folder)")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument("--png", type=Path, default=None,
                   help="plot (default: OUT/learning.png with --out, else the --json path with .png, "
                        "else bench_learning.png)")
    args = p.parse_args(argv)
    args.runs = args.runs or [BenchRun("default")]
    names = [r.name for r in args.runs]
    if len(set(names)) != len(names):
        p.error(f"run names must differ: {names}")
    if args.heldout not in ("test_spglib", "test_database", "test_ordered", "statistics_real"):
        p.error(f"--heldout {args.heldout!r}: one of test_spglib, test_database, test_ordered, statistics_real")
    if args.patterns < 1 or args.points < 1 or args.threads < 0 or args.warmup < 0:
        p.error("--patterns and --points must be >= 1, --threads and --warmup >= 0")
    return args


def main(argv=None) -> dict:
    """Run the comparison; returns ``{"runs": [...]}`` (written as described in the module docstring)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("trainer").setLevel(logging.INFO)
    with tempfile.TemporaryDirectory(prefix="bench_learning_") as tmp:
        out_root = args.out or Path(tmp)
        taken = [str(out_root / r.name) for r in args.runs if (out_root / r.name).exists()
                 and any((out_root / r.name).iterdir())]
        if taken:  # the trainer would append to their metrics
            raise SystemExit(f"run folders already exist: {', '.join(taken)} (choose another --out or remove them)")
        if args.warmup:
            warm_up(args.runs[0], args, out_root)
        runs = [run_one(r, args, out_root) for r in args.runs]
    print_table(runs, args.heldout)
    png = args.png or (args.out / "learning.png" if args.out else
                       args.json.with_suffix(".png") if args.json else Path("bench_learning.png"))
    print(f"plot: {plot(runs, args.heldout, png)}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload(runs), indent=1))
        print(f"results: {args.json}")
    return {"runs": runs}


if __name__ == "__main__":
    sys.exit(1 if any(r["error"] for r in main()["runs"]) else 0)
