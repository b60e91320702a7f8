"""The training loop's progress report: a bar on a terminal, rate-limited log lines elsewhere."""
from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)


class Progress:
    """A rich bar on a terminal; elsewhere (a log file, CI, nohup) a log line at most every ``every_s`` seconds."""

    def __init__(self, enabled: bool, total: int, start: int, every_s: float = 30.0):
        from rich.console import Console

        self.bar = None
        self.total, self.every_s = total, every_s
        self.enabled = enabled
        self.last_line = time.perf_counter()
        if enabled and Console().is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                                TimeRemainingColumn(), TextColumn("{task.description}"), transient=False)
            self.bar.start()
            self.task = self.bar.add_task("", total=total, completed=start)

    def update(self, step: int, text: str = "") -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=step, total=self.total, **({"description": text} if text else {}))
        elif self.enabled and text and time.perf_counter() - self.last_line >= self.every_s:
            self.last_line = time.perf_counter()
            log.info("train %d/%d: %s", step, self.total, text)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
