"""The one place where OSError from /proc becomes NoSuchProcess or AccessDenied."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager

from fdguard.errors import AccessDenied, NoSuchProcess

_GONE = frozenset({errno.ENOENT, errno.ESRCH})
_DENIED = frozenset({errno.EACCES, errno.EPERM})


def translate(err: OSError, pid: int, what: str) -> Exception:
    """Return the fdguard error that `err`, met while reading `what` of `pid`, means."""
    if err.errno in _GONE:
        return NoSuchProcess(pid, f"gone while reading {what}")
    if err.errno in _DENIED:
        return AccessDenied(pid, what)
    return err


@contextmanager
def process_errors(pid: int, what: str) -> Iterator[None]:
    """Translate OSError raised in the block, keeping the original as the cause."""
    try:
        yield
    except OSError as err:
        new = translate(err, pid, what)
        if new is err:
            raise
        raise new from err
