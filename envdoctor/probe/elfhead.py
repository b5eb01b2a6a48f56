"""The few ELF facts that tell whether a file is a Python interpreter, read with struct alone.

probe/interpreter.py decides this before any probe may start, so it is on every `check`'s critical
path; pyelftools costs more to import than reading these fields takes. Read: whether the file is an
executable (ET_EXEC, or a PT_INTERP segment), its DT_NEEDED libraries and its dynamic string table
(the `.dynstr` section, else the table DT_STRTAB points at, as pyelftools finds it). A file whose
headers do not hold together raises ELFError. The binary forensics (binary/) keep pyelftools.
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO, NamedTuple, Optional

ET_EXEC = 2
PT_LOAD, PT_DYNAMIC, PT_INTERP = 1, 2, 3
DT_NULL, DT_NEEDED, DT_STRTAB, DT_STRSZ = 0, 1, 5, 10
SHN_XINDEX = 0xFFFF
_MAX_TABLE = 1 << 16  # entries in a header table: more is a damaged file, not a reason to read gigabytes


class ELFError(ValueError):
    """The file's ELF headers do not hold together."""


class ELFParseError(ELFError):
    """A header or table reaches past the end of the file (pyelftools' name for it, kept for the message)."""


class ElfHead(NamedTuple):
    is_exec: bool
    needed: list[str]
    dynstr: Optional[bytes]  # None: no section headers and no DT_STRTAB to find it by


class _Reader:
    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.size = os.fstat(f.fileno()).st_size
        ident = self.read(0, 16)
        if ident[:4] != b"\x7fELF" or ident[4] not in (1, 2) or ident[5] not in (1, 2):
            raise ELFError("not an ELF file of a known class and byte order")
        self.is64 = ident[4] == 2
        self.end = "<" if ident[5] == 1 else ">"

    def read(self, offset: int, size: int) -> bytes:
        if offset < 0 or size < 0 or offset + size > self.size:
            raise ELFParseError(f"{size} bytes at offset {offset} are not in the file ({self.size} bytes)")
        self.f.seek(offset)
        data = self.f.read(size)
        if len(data) != size:
            raise ELFParseError(f"{size} bytes at offset {offset} are past the end of the file")
        return data

    def unpack(self, fmt: str, offset: int) -> tuple[int, ...]:
        fmt = self.end + fmt
        return struct.unpack(fmt, self.read(offset, struct.calcsize(fmt)))


def _cstring(table: bytes, offset: int) -> str:
    if offset >= len(table):
        raise ELFError(f"string offset {offset} is past its table ({len(table)} bytes)")
    return table[offset:table.find(b"\0", offset) if b"\0" in table[offset:] else len(table)].decode("utf-8",
                                                                                                     "replace")


def read_head(f: BinaryIO) -> ElfHead:
    r = _Reader(f)
    if r.is64:
        e_type, _, _, _, phoff, shoff, _, _, phentsize, phnum, shentsize, shnum, shstrndx = \
            r.unpack("HHIQQQIHHHHHH", 16)
        ph_fmt, sh_fmt, dyn_fmt = "IIQQQQQQ", "IIQQQQIIQQ", "qQ"
    else:
        e_type, _, _, _, phoff, shoff, _, _, phentsize, phnum, shentsize, shnum, shstrndx = \
            r.unpack("HHIIIIIHHHHHH", 16)
        ph_fmt, sh_fmt, dyn_fmt = "IIIIIIII", "IIIIIIIIII", "iI"
    segments = []  # (p_type, p_offset, p_vaddr, p_filesz)
    for i in range(min(phnum, _MAX_TABLE) if phoff else 0):
        h = r.unpack(ph_fmt, phoff + i * phentsize)
        segments.append((h[0], h[2], h[3], h[5]) if r.is64 else (h[0], h[1], h[2], h[4]))
    sections = _sections(r, shoff, shentsize, shnum, shstrndx, sh_fmt)
    dynstr = next((data for name, data in sections if name == ".dynstr"), None)
    needed_offsets: list[int] = []
    strtab_addr = strsz = None
    for p_type, p_offset, _, p_filesz in segments:
        if p_type != PT_DYNAMIC:
            continue
        size = struct.calcsize(r.end + dyn_fmt)
        for i in range(min(p_filesz // size, _MAX_TABLE)):
            tag, val = r.unpack(dyn_fmt, p_offset + i * size)
            if tag == DT_NULL:
                break
            if tag == DT_NEEDED:
                needed_offsets.append(val)
            elif tag == DT_STRTAB:
                strtab_addr = val
            elif tag == DT_STRSZ:
                strsz = val
    if dynstr is None and strtab_addr is not None:
        dynstr = _mapped(r, segments, strtab_addr, strsz)
    if needed_offsets and dynstr is None:
        raise ELFError("DT_NEEDED entries without a string table")
    needed = [_cstring(dynstr, o) for o in needed_offsets] if dynstr is not None else []
    is_exec = e_type == ET_EXEC or any(s[0] == PT_INTERP for s in segments)
    return ElfHead(is_exec, needed, dynstr)


def _sections(r: _Reader, shoff: int, shentsize: int, shnum: int, shstrndx: int, sh_fmt: str
              ) -> list[tuple[str, bytes]]:
    """(name, contents) of every section that has contents in the file (not SHT_NOBITS)."""
    if not shoff:
        return []
    first = r.unpack(sh_fmt, shoff)
    if shnum == 0:  # more sections than the header's field holds: the count is in section 0
        shnum = first[5]
    if shstrndx == SHN_XINDEX:
        shstrndx = first[6]
    heads = [r.unpack(sh_fmt, shoff + i * shentsize) for i in range(min(shnum, _MAX_TABLE))]
    if not heads:
        return []
    if shstrndx >= len(heads):
        raise ELFError(f"section-name table index {shstrndx} of {len(heads)} sections")
    names = r.read(heads[shstrndx][4], heads[shstrndx][5])
    out = []
    for h in heads:
        sh_name, sh_type, sh_offset, sh_size = h[0], h[1], h[4], h[5]
        if sh_type == 8 or not sh_size:  # SHT_NOBITS (.bss): nothing in the file
            continue
        name = _cstring(names, sh_name) if names else ""
        out.append((name, r.read(sh_offset, sh_size) if name == ".dynstr" else b""))
    return out


def _mapped(r: _Reader, segments: list[tuple[int, int, int, int]], addr: int, size: Optional[int]
            ) -> Optional[bytes]:
    """The bytes at virtual address `addr`, through the PT_LOAD segment that maps it."""
    for p_type, p_offset, p_vaddr, p_filesz in segments:
        if p_type == PT_LOAD and p_vaddr <= addr < p_vaddr + p_filesz:
            start = p_offset + addr - p_vaddr
            return r.read(start, size if size is not None else p_vaddr + p_filesz - addr)
    return None
