"""The one writer of rendered output, for every command: -o FILE, or stdout.

- Any string reaches the output, even one holding bytes that are not UTF-8 (a path or
  LD_LIBRARY_PATH decoded by Python with surrogate escapes): each lone surrogate is
  written as the six characters ``\\udcXX``. Inside JSON that is the standard escape,
  so a reader gets the very same string back (and ``os.fsencode`` the original bytes);
  in text and Markdown it is a visible, lossless notation. Files are always valid UTF-8.
- ``-o FILE`` is written to a temporary file beside FILE and renamed over it only when
  complete, so a failed run (an error, Ctrl-C, a full disk) never destroys an existing
  FILE. A FILE that is not a regular file (``/dev/stdout``, a FIFO) is written in place.
- A write error on stdout (``> /dev/full``) is one line, exit 2:
  ``cannot write output: No space left on device``. A closed pipe stays a BrokenPipeError
  (the CLI ends quietly, like ``head`` expects).
"""

from __future__ import annotations

import codecs
import io
import os
import re
import stat
import sys
import tempfile
from typing import IO, Any, Callable, Optional

from envdoctor.errors import UsageError

_SURROGATE = re.compile("[\ud800-\udfff]")


class OutputError(UsageError):
    """The output could not be written (full disk, a vanished directory): one line, exit 2."""


def escape_surrogates(text: str) -> str:
    """Lone surrogates (undecodable bytes) -> the 6-character escape ``\\udcXX``; everything else unchanged."""
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)


def encode(text: str) -> bytes:
    return escape_surrogates(text).encode("utf-8")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_file(path: str, text: str) -> None:
    """Write text to path atomically (temporary beside it, then rename). Errors -> UsageError naming -o PATH."""
    data = encode(text)
    try:
        try:
            st: Optional[os.stat_result] = os.stat(path)
        except FileNotFoundError:
            st = None
        if st is not None and not stat.S_ISREG(st.st_mode):
            with open(path, "wb") as f:  # /dev/stdout, a FIFO: there is nothing to rename over
                f.write(data)
            return
        target = os.path.realpath(path)  # -o link.json: replace the file the link points to, keep the link
        if not os.access(os.path.dirname(target), os.W_OK) and st is not None:
            with open(target, "wb") as f:  # a writable FILE in a read-only directory: in place, as before
                f.write(data)
            return
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".envdoctor-tmp",
                                   dir=os.path.dirname(target))
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            # the permissions an ordinary open() would have given (mkstemp makes 0600), or FILE's own
            os.chmod(tmp, stat.S_IMODE(st.st_mode) if st is not None else 0o666 & ~_umask())
            os.replace(tmp, target)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    except OSError as exc:
        raise UsageError(f"-o {path}: {exc.strerror or exc}") from None


# what the marks become on a terminal whose encoding lacks them (a legacy code page, a C locale)
_ASCII = str.maketrans({"✓": "ok", "✗": "x", "…": "...", "·": "-", "—": "-", "–": "-", "→": "->", "≥": ">=",
                        "≤": "<=", "×": "x"})


def is_utf8(encoding: Optional[str]) -> bool:
    """Whether an encoding name is UTF-8 (Windows' code page 65001 included: cp65001 is UTF-8)."""
    try:
        return codecs.lookup(encoding or "").name == "utf-8"
    except LookupError:
        return False


def fit_encoding(text: str, encoding: Optional[str]) -> str:
    """Text a stream in `encoding` can take: unchanged when it can, else marks in ASCII and the rest escaped."""
    enc = encoding or "utf-8"
    try:
        text.encode(enc)
        return text
    except UnicodeEncodeError:
        return text.translate(_ASCII).encode(enc, "backslashreplace").decode(enc)
    except LookupError:
        return text


class StdoutWriter:
    """sys.stdout as renderers see it (tty, encoding, width pass through), with surrogates escaped and
    write errors turned into OutputError.

    Redirected to a file or pipe, the output is UTF-8 bytes whatever the code page (a report saved with
    `> report.json` on a cp936 or cp1252 Windows is read back as UTF-8); on a terminal whose encoding
    lacks a character, the marks are written in ASCII instead of failing."""

    def __init__(self, stream: Optional[IO[str]] = None) -> None:
        self._stream = stream or sys.stdout

    def _utf8_bytes(self) -> Any:
        """The binary buffer to write UTF-8 to, when the stream is redirected and not UTF-8; else None."""
        stream = self._stream
        if is_utf8(getattr(stream, "encoding", None)):
            return None
        try:
            if stream.isatty():
                return None
        except (OSError, ValueError, AttributeError):
            return None
        return getattr(stream, "buffer", None)

    def write(self, text: str) -> int:
        try:
            text = escape_surrogates(text)
            buffer = self._utf8_bytes()
            if buffer is not None:
                self._stream.flush()  # what went through the text layer first stays first
                buffer.write(text.encode("utf-8"))
                return len(text)
            return self._stream.write(fit_encoding(text, getattr(self._stream, "encoding", None)))
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputError(f"cannot write output: {exc.strerror or exc}") from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputError(f"cannot write output: {exc.strerror or exc}") from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def emit(text: str, output: Optional[str] = None) -> None:
    """Rendered text to -o FILE (atomically) or to stdout."""
    if output:
        write_file(output, text)
        return
    out = StdoutWriter()
    out.write(text)
    out.flush()


def emit_rendered(render: Callable[[IO[str]], None], output: Optional[str] = None) -> None:
    """For renderers that print to a stream (rich): into a buffer for -o FILE, else straight to stdout."""
    if output:
        buf = io.StringIO()
        render(buf)
        write_file(output, buf.getvalue())
        return
    out = StdoutWriter()
    render(out)  # type: ignore[arg-type]  # a file-like object with the same interface
    out.flush()


class RedactingWriter:
    """A stream whose every write is redacted first (fix's progress, plan and result lines)."""

    def __init__(self, stream: IO[str], redact: Callable[[str], str]) -> None:
        self._stream = stream
        self._redact = redact

    def write(self, text: str) -> int:
        return self._stream.write(self._redact(text))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
