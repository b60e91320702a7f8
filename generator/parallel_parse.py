"""What every database source shares to parse its entries: the per-entry guard, the spglib quieting
and the parallel run with a progress bar.

A source's worker parses one task (a chunk of entries) into a list whose items are either a
:class:`generator.crystal_record.CrystalRecord` or an ``(id, reason, detail)`` skip tuple;
:func:`run_tasks` runs the workers in processes and concatenates their lists in task order.
"""
from __future__ import annotations

import os
from typing import Callable

from generator.cell import SkipEntry

__all__ = ["CHUNK", "parse_entry", "quiet_spglib", "run_tasks"]

CHUNK = 400  # entries per parallel task


def quiet_spglib() -> None:
    """Silence spglib's C-level notes on its tolerance fallbacks, printed for thousands of relaxed cells.

    A user's own SPGLIB_WARNING setting wins.
    """
    os.environ.setdefault("SPGLIB_WARNING", "OFF")


def parse_entry(entry_id: str, parse: Callable[[], object], detail_chars: int | None = None):
    """``parse()`` (a record), or the ``(entry_id, reason, detail)`` skip tuple of the entry.

    A :class:`SkipEntry` gives its reason; any other error is "unparsable" with the exception as
    detail (cut to ``detail_chars`` characters; None keeps it whole): one bad entry never aborts the run.
    """
    try:
        return parse()
    except SkipEntry as exc:
        return (entry_id, exc.reason, exc.detail)
    except Exception as exc:  # one bad entry never aborts the run
        return (entry_id, "unparsable", f"{type(exc).__name__}: {exc}"[:detail_chars])


def run_tasks(worker, tasks: list, workers: int, description: str) -> list:
    """Run ``worker`` over ``tasks`` in ``workers`` processes with a rich progress bar, in task order."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    import multiprocessing as mp
    import threading

    # fork is cheapest, but a parent holding threads (torch, ray) would be copied in a bad state;
    # then pay for spawn. Decided before the progress bar starts its own refresh thread.
    method = "fork" if threading.active_count() == 1 and "fork" in mp.get_all_start_methods() else "spawn"
    results: list = [None] * len(tasks)
    columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=False) as progress:
        bar = progress.add_task(description, total=len(tasks))
        if workers <= 1 or len(tasks) <= 1:
            for i, task in enumerate(tasks):
                results[i] = worker(task)
                progress.advance(bar)
        else:
            from concurrent.futures import ProcessPoolExecutor, as_completed

            with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context(method)) as pool:
                futures = {pool.submit(worker, t): i for i, t in enumerate(tasks)}
                for fut in as_completed(futures):
                    results[futures[fut]] = fut.result()
                    progress.advance(bar)
    return [item for chunk in results for item in chunk]
