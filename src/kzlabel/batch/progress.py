"""The progress bar a batch shows on a terminal: members done, rate and ETA.

rich is imported only when a bar is actually shown, so library callers and workers (which never show one) do not
pay for it; disabled, the bar is a no-op and the batch prints nothing at all, as library code should.
"""

from __future__ import annotations

import time
from typing import Any


class Progress:
    """rich progress with rate and ETA; a no-op when disabled (library code prints nothing else)."""

    def __init__(self, enabled: bool, total: int | None, label: str) -> None:
        self.bar: Any = None
        if not enabled:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        self.bar = RichProgress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            transient=False,
        )
        self.bar.start()
        self.task = self.bar.add_task(label, total=total, rate="")
        self.t0 = time.monotonic()
        self.n = 0

    def advance(self) -> None:
        if self.bar is None:
            return
        self.n += 1
        dt = time.monotonic() - self.t0
        self.bar.update(self.task, advance=1, rate=f"{self.n / dt:.1f} files/s" if dt > 0 else "")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
