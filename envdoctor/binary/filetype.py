"""What a file is, from its first bytes: ELF, PE, Mach-O, a Git LFS pointer, text, nothing.

The loader's own words for these cases are unhelpful (``invalid ELF header``,
``file too short``, ``%1 is not a valid Win32 application``); here they get a name.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Optional

LFS_MAGIC = b"version https://git-lfs.github.com/spec/v1"
_MACHO = {b"\xfe\xed\xfa\xce", b"\xce\xfa\xed\xfe", b"\xfe\xed\xfa\xcf", b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe"}
HEAD = 4096


@dataclass
class Sniff:
    format: str  # elf | pe | macho | lfs-pointer | html | text | empty | unknown
    size: int
    problem: Optional[dict[str, Any]] = None  # {"kind": ..., "detail": ...} when it cannot be a loadable binary
    extra: dict[str, Any] = field(default_factory=dict)


def sniff(path: str) -> Sniff:
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(HEAD)
    if size == 0:
        return Sniff("empty", 0, {"kind": "empty", "detail": "the file is empty (0 bytes)"})
    if head.startswith(b"\x7fELF"):
        # the smallest header is 52 bytes (32-bit); the loader says "file too short"
        need = 64 if len(head) > 4 and head[4] == 2 else 52
        if size < need:
            return Sniff("elf", size, {"kind": "truncated", "detail": f"{size} bytes: shorter than an ELF header"})
        return Sniff("elf", size)
    if head.startswith(b"MZ"):
        return Sniff("pe", size)
    if head[:4] in _MACHO:
        return Sniff("macho", size, {"kind": "wrong_format", "detail": "a macOS Mach-O binary"})
    if head.startswith(LFS_MAGIC):
        text = head.decode("ascii", "replace")
        extra: dict[str, Any] = {}
        m = re.search(r"^oid (\S+)", text, re.M)
        if m:
            extra["oid"] = m.group(1)
        m = re.search(r"^size (\d+)", text, re.M)
        if m:
            extra["real_size"] = int(m.group(1))
        return Sniff("lfs-pointer", size, {
            "kind": "lfs_pointer",
            "detail": "a Git LFS pointer file, not the binary: the repository was cloned without `git lfs`"
                      + (f" (the real file has {extra['real_size']:,} bytes)" if "real_size" in extra else ""),
        }, extra)
    lower = head.lstrip()[:200].lower()
    if lower.startswith((b"<!doctype html", b"<html")) or b"<html" in lower:
        return Sniff("html", size, {"kind": "not_binary",
                                    "detail": "an HTML page (a download that saved an error or login page)"})
    if _looks_text(head):
        first = head.decode("utf-8", "replace").strip().splitlines()[:1]
        return Sniff("text", size, {"kind": "not_binary",
                                    "detail": "a text file, not a compiled library"
                                              + (f": {first[0][:80]!r}" if first else "")})
    return Sniff("unknown", size, {"kind": "not_binary", "detail": "not an ELF, PE or Mach-O file"})


def _looks_text(data: bytes) -> bool:
    if b"\x00" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(data) - 3  # only a character cut at the end of the sample
    return True
