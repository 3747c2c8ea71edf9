"""Progress bars on stderr for long commands (rich), so that stdout stays clean for ``--json``."""

from contextlib import contextmanager

__all__ = ["progress"]


@contextmanager
def progress(what, total):
    """A context giving ``step()``, which advances a bar of ``total`` steps described by ``what``
    (drawn on stderr while it runs, removed when done; none off a terminal, where rich would
    leave an empty line before what follows, e.g. a one-line error)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        yield lambda: None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda: bar.advance(task)
