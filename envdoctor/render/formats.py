"""`--format` and `-o`, written once for every command that has them (check, diff, inspect, fix, fleet).

The text renderer draws on a stream (colour only on a terminal, never into a file); the other formats
are whole strings. Both go out through render.output (atomic -o, redacted stdout).
"""

from __future__ import annotations

import os
from typing import IO, Callable, Iterable, Optional

from envdoctor.errors import UsageError
from envdoctor.render.output import emit, emit_rendered

# draws the text form on a stream; the bool is `color` (None = decide by the stream, False = never)
TextRender = Callable[[IO[str], Optional[bool]], None]


def check_format(fmt: str, formats: Iterable[str]) -> None:
    formats = tuple(formats)
    if fmt not in formats:
        raise UsageError(f"--format {fmt}: choose one of {', '.join(formats)}")


def check_output_path(output: Optional[str]) -> None:
    """Refuse an -o that cannot be written before probing (which takes seconds), not after."""
    if not output:
        return
    if os.path.isdir(output):
        raise UsageError(f"-o {output}: is a directory")
    parent = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(parent):
        raise UsageError(f"-o {output}: no such directory {parent}")
    if not os.access(parent, os.W_OK) and not os.access(output, os.W_OK):
        raise UsageError(f"-o {output}: {parent} is not writable")


def write_formatted(fmt: str, output: Optional[str], text: TextRender, **whole: Callable[[], str]) -> None:
    """Render `fmt` (text, or one of the keyword formats: json=..., markdown=...) to -o FILE or stdout."""
    check_format(fmt, ("text", *whole))
    if fmt == "text":
        emit_rendered(lambda stream: text(stream, False if output else None), output)
    else:
        emit(whole[fmt](), output)
