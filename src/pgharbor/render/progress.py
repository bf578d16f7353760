"""A progress bar on a terminal; nothing but the summary otherwise."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

ProgressFn = Callable[[int, int], None]
SayFn = Callable[[str], None]


@contextlib.contextmanager
def progress_bar(what: str, interactive: bool) -> Iterator[tuple[ProgressFn, SayFn]]:
    if not interactive:
        yield (lambda done, total: None), (lambda text: None)
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(
        f"[bold]{what}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(what, total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=max(total, done) or None)

        def say(text: str) -> None:
            bar.console.print(text)

        yield progress, say
