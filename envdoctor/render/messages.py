"""One-line messages to stderr that are not the command's output (warnings about its input)."""

from __future__ import annotations

import sys

_said: set[str] = set()


def warn(text: str) -> None:
    """`envdoctor: warning: TEXT` on stderr, once per process (tables are loaded more than once per command)."""
    if text in _said:
        return
    _said.add(text)
    try:
        sys.stderr.write(f"envdoctor: warning: {text}\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed stderr must not turn a warning into a failure
        pass
