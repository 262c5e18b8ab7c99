"""Progress bars counted in images: a live rich bar in a terminal, a plain line per tenth (or per minute,
whichever comes first) when logged to a file."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

# Under torchrun only rank 0 talks; the others would repeat every line.
console = Console(stderr=True, quiet=os.environ.get("RANK", "0") != "0")
LINE_EVERY_S = 60.0  # a logged run of hours still says where it is every minute


class ProgressBar:
    """Advance one rich task, or print a line every tenth of the work (or every minute) when output is not
    a terminal."""

    def __init__(self, progress: Progress | None, task: int | None, description: str, total: int,
                 completed: int, silent: bool = False):
        self._progress, self._task, self._silent = progress, task, silent
        self._description, self._total, self._done = description, total, completed
        self._next_line, self._start = completed + total / 10, time.perf_counter()
        self._next_time = self._start + LINE_EVERY_S

    def update(self, advance: int, **fields: float) -> None:
        self._done += advance
        if self._progress is not None:
            self._progress.update(self._task, advance=advance, **fields)
        elif not self._silent and (self._done >= self._next_line or self._done >= self._total
                                   or time.perf_counter() >= self._next_time):
            while self._next_line <= self._done:
                self._next_line += max(self._total / 10, 1)
            self._next_time = time.perf_counter() + LINE_EVERY_S
            shown = " ".join(f"{k.replace('_per_s', '/s')} {v:.4g}" for k, v in fields.items())
            console.print(f"{self._description}: {self._done}/{self._total} {shown} "
                          f"({time.perf_counter() - self._start:.0f} s)", highlight=False)


def per_step(bar: ProgressBar, images: int, steps: int) -> Callable[[int, object], None]:
    """A sampler's step callback (pdae.sampling.StepCallback) that advances `bar` by `images` over its next
    `steps` calls, in whole images, so that a long batch shows progress as it goes. It counts calls, not the
    sampler's step index: one callback can follow an inversion and the decodings after it."""
    calls = itertools.count(1)

    def advance(_step: int, _x: object) -> None:
        done = next(calls)
        bar.update(images * done // steps - images * (done - 1) // steps)

    return advance


@contextmanager
def progress_bar(description: str, total: int, completed: int = 0, enabled: bool = True,
                 fields: tuple[str, ...] = ("loss", "images_per_s")) -> Iterator[ProgressBar]:
    """Show progress (only when enabled, e.g. on rank 0) over `total` units; `fields` are shown beside it."""
    if not enabled or not console.is_terminal:
        yield ProgressBar(None, None, description, total, completed, silent=not enabled)
        return
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               *(TextColumn(f"{name.replace('_per_s', '/s')} {{task.fields[{name}]:.4g}}")
                 for name in fields),
               TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(description, total=total, completed=completed, **dict.fromkeys(fields, 0.0))
        yield ProgressBar(progress, task, description, total, completed)
