"""ELF: one shared object as the loader sees it: its class and machine, DT_NEEDED, RPATH/RUNPATH, SONAME,
the symbol versions it needs and defines, and its exported symbols (through its hash table).

A file cut short is recognised from the raw header (``truncation``) before a full parser chokes on it.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import IO, Any, Optional

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerDefSection, GNUVerNeedSection
from elftools.elf.hash import ELFHashSection, GNUHashSection


class ElfReadError(Exception):
    """The file claims to be ELF but cannot be read (truncated or corrupt)."""


@dataclass
class ElfObject:
    path: str
    elfclass: int
    machine: str
    soname: Optional[str] = None
    needed: list[str] = field(default_factory=list)
    rpath: list[str] = field(default_factory=list)
    runpath: list[str] = field(default_factory=list)
    verneed: dict[str, list[str]] = field(default_factory=dict)  # library -> versions required from it
    verdef: list[str] = field(default_factory=list)  # versions this object defines
    _elf: Any = None
    _stream: Optional[IO[bytes]] = None
    _hash: Any = None
    _defined: Optional[set[str]] = None

    def defines(self, name: str) -> bool:
        """Does this object export `name` (defined, global or weak)? Uses the hash table."""
        if self._hash is not None:
            try:
                sym = self._hash.get_symbol(name)
            except Exception:  # a damaged hash table: fall back to the full table
                self._hash = None
            else:
                return sym is not None and sym["st_shndx"] != "SHN_UNDEF" and \
                    sym["st_info"]["bind"] != "STB_LOCAL"
        if self._defined is None:
            self._defined = set()
            dynsym = self._elf.get_section_by_name(".dynsym") if self._elf else None
            if dynsym is not None:
                for sym in dynsym.iter_symbols():
                    if sym["st_shndx"] != "SHN_UNDEF" and sym["st_info"]["bind"] != "STB_LOCAL" and sym.name:
                        self._defined.add(sym.name)
        return name in self._defined

    def undefined(self) -> list[tuple[str, bool]]:
        """(name, weak) of every undefined dynamic symbol."""
        dynsym = self._elf.get_section_by_name(".dynsym")
        out: list[tuple[str, bool]] = []
        if dynsym is None:
            return out
        for sym in dynsym.iter_symbols():
            if sym.name and sym["st_shndx"] == "SHN_UNDEF":
                out.append((sym.name, sym["st_info"]["bind"] == "STB_WEAK"))
        return out

    def exported_names(self, prefix: str) -> list[str]:
        dynsym = self._elf.get_section_by_name(".dynsym")
        if dynsym is None:
            return []
        return [s.name for s in dynsym.iter_symbols()
                if s.name.startswith(prefix) and s["st_shndx"] != "SHN_UNDEF"]

    def section_strings(self, name: str) -> list[str]:
        sec = self._elf.get_section_by_name(name)
        if sec is None or sec["sh_type"] == "SHT_NOBITS":
            return []
        return [s.decode("utf-8", "replace") for s in sec.data().split(b"\0") if s.strip()]

    def dynstr_contains(self, needle: bytes) -> bool:
        sec = self._elf.get_section_by_name(".dynstr")
        return sec is not None and needle in sec.data()

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None


def truncation(path: str) -> Optional[str]:
    """Why an ELF file is cut short, or None: program headers, segments or section headers past its end.

    Read with struct from the raw header: a truncated file is exactly what a full parser chokes on.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(64)
        bits64, endian = head[4] == 2, "<" if head[5] != 2 else ">"
        try:
            if bits64:
                phoff, shoff = struct.unpack_from(endian + "QQ", head, 32)
                phentsize, phnum, shentsize, shnum = struct.unpack_from(endian + "HHHH", head, 54)
            else:
                phoff, shoff = struct.unpack_from(endian + "II", head, 28)
                phentsize, phnum, shentsize, shnum = struct.unpack_from(endian + "HHHH", head, 42)
        except struct.error:
            return f"{size:,} bytes: shorter than an ELF header"
        ends = {"program headers": phoff + phnum * phentsize, "section headers": shoff + shnum * shentsize}
        if ends["program headers"] <= size:
            f.seek(phoff)
            table = f.read(phnum * phentsize)
            for i in range(phnum):
                if bits64:
                    _t, _fl, off, _va, _pa, filesz = struct.unpack_from(endian + "IIQQQQ", table, i * phentsize)
                else:
                    _t, off, _va, _pa, filesz = struct.unpack_from(endian + "IIIII", table, i * phentsize)
                ends["segments"] = max(ends.get("segments", 0), off + filesz)
    what, end = max(ends.items(), key=lambda kv: kv[1])
    if end > size:
        return f"{size:,} bytes, but its {what} extend to {end:,} bytes: the file is cut short"
    return None


def open_object(path: str) -> ElfObject:
    stream = open(path, "rb")
    try:
        elf = ELFFile(stream)
        obj = ElfObject(path=path, elfclass=elf.elfclass, machine=elf["e_machine"], _elf=elf, _stream=stream)
        for sec in elf.iter_sections():
            if sec.name == ".dynamic" or sec["sh_type"] == "SHT_DYNAMIC":
                for tag in sec.iter_tags():  # type: ignore[attr-defined]  # a DynamicSection
                    t = tag.entry.d_tag
                    if t == "DT_NEEDED":
                        obj.needed.append(tag.needed)
                    elif t == "DT_SONAME":
                        obj.soname = tag.soname
                    elif t == "DT_RPATH":
                        obj.rpath += [p for p in tag.rpath.split(":") if p]
                    elif t == "DT_RUNPATH":
                        obj.runpath += [p for p in tag.runpath.split(":") if p]
            elif isinstance(sec, GNUVerNeedSection):
                for verneed, auxes in sec.iter_versions():
                    obj.verneed.setdefault(verneed.name or "", []).extend(a.name for a in auxes)
            elif isinstance(sec, GNUVerDefSection):
                for _verdef, auxes in sec.iter_versions():
                    names = [a.name for a in auxes]
                    if names:
                        obj.verdef.append(names[0])
            elif isinstance(sec, GNUHashSection) or (isinstance(sec, ELFHashSection) and obj._hash is None):
                obj._hash = sec
    except (ELFError, struct.error, ValueError, AttributeError) as exc:
        stream.close()
        raise ElfReadError(str(exc)) from None
    except BaseException:
        stream.close()
        raise
    return obj
