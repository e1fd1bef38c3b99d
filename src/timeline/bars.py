"""rich's progress columns as timeline's bars show them: counts, rates and time left in the task's own unit
(loaded with rich, only when a bar is drawn)."""

from __future__ import annotations

from rich.progress import ProgressColumn, Task
from rich.table import Column
from rich.text import Text


class Rate(ProgressColumn):
    """Items a second, in the task's own unit."""

    def __init__(self, unit: str) -> None:
        super().__init__(table_column=Column(no_wrap=True))
        self.unit = unit

    def render(self, task: Task) -> Text:
        # rich estimates speed from recent updates; a task updated once has none, so fall back to the mean.
        elapsed = task.elapsed or 0.0
        speed = task.finished_speed or task.speed or (task.completed / elapsed if elapsed else None)
        return Text(f"{speed:,.0f} {self.unit}/s" if speed else "", style="progress.data.speed")


class Count(ProgressColumn):
    """Items done, of how many when known, in the task's own unit."""

    def __init__(self, unit: str) -> None:
        super().__init__(table_column=Column(no_wrap=True))
        self.unit = unit

    def render(self, task: Task) -> Text:
        of = f"/{task.total:,.0f}" if task.total is not None else ""
        return Text(f"{task.completed:,.0f}{of} {self.unit}", style="progress.download")


class Left(ProgressColumn):
    """Time left, as "12 s left" (rich's own column shows a bare clock)."""

    def __init__(self) -> None:
        super().__init__(table_column=Column(no_wrap=True))

    def render(self, task: Task) -> Text:
        remaining = 0.0 if task.finished else task.time_remaining
        if remaining is None:
            return Text("")
        return Text(f"{remaining:,.0f} s left", style="progress.remaining")
