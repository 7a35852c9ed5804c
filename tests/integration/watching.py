"""A `Watcher` running in a thread while a test drives load: started, stopped, joined."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from fdguard.watch import Watcher


@contextlib.contextmanager
def watching(w: Watcher, *, duration: float = 60.0) -> Iterator[Watcher]:
    """Run `w` in a thread for the block (at most `duration` seconds); then stop it,
    join the thread, and raise what the watcher raised, if anything."""
    errors: list[BaseException] = []

    def body() -> None:
        try:
            w.run(duration=duration)
        except BaseException as err:  # re-raised in the test's thread below
            errors.append(err)

    th = threading.Thread(target=body)
    th.start()
    try:
        yield w
    finally:
        w.stop()
        th.join()
    if errors:
        raise errors[0]
