"""probe/elfhead.py reads what pyelftools reads, on real files: executables, interpreters, shared libraries,
and the same files truncated and with bytes changed (then both must refuse, or agree).

elfhead decides whether `--python X` is an interpreter before anything runs in it (probe/interpreter.py);
it replaced pyelftools there only for start-up speed, so pyelftools is the reference here.
"""

from __future__ import annotations

import glob
import os
import random
import shutil
import sys
from pathlib import Path
from typing import Optional

import pytest
from elftools.common.exceptions import ELFError as ToolsError
from elftools.elf.dynamic import DynamicSegment
from elftools.elf.elffile import ELFFile

from envdoctor.probe import interpreter
from envdoctor.probe.elfhead import ELFError, read_head

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ELF files of this machine")


def reference(path: str) -> Optional[tuple[bool, list[str], Optional[bytes]]]:
    """(is an executable, DT_NEEDED, .dynstr) as pyelftools reads them; None if it cannot."""
    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            is_exec = elf["e_type"] == "ET_EXEC" or any(s["p_type"] == "PT_INTERP" for s in elf.iter_segments())
            needed: list[str] = []
            for seg in elf.iter_segments():
                if isinstance(seg, DynamicSegment):
                    needed = [str(getattr(t, "needed", "")) for t in seg.iter_tags() if t.entry.d_tag == "DT_NEEDED"]
            dynstr = elf.get_section_by_name(".dynstr")
            return is_exec, needed, dynstr.data() if dynstr is not None else None
    except (ToolsError, OSError, ValueError, KeyError, AttributeError, TypeError):
        return None


def ours(path: str) -> Optional[tuple[bool, list[str], Optional[bytes]]]:
    try:
        with open(path, "rb") as f:
            head = read_head(f)
    except (ELFError, OSError):
        return None
    return head.is_exec, head.needed, head.dynstr


def real_elf_files() -> list[str]:
    found = [os.path.realpath(p) for p in (sys.executable, shutil.which("bash") or "/bin/bash",
                                            shutil.which("gcc") or "/bin/ls")]
    found += sorted(glob.glob("/root/.pyenv/versions/*/bin/python3.*[0-9]"))[:4]
    found += sorted(glob.glob("/usr/lib/x86_64-linux-gnu/libz.so*"))[:1]
    found += sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "lib-dynload", "_json*.so")))[:1]
    found += [os.path.realpath("/usr/bin/python3")] if os.path.exists("/usr/bin/python3") else []
    return [p for p in dict.fromkeys(found) if os.path.isfile(p) and open(p, "rb").read(4) == b"\x7fELF"]


def test_real_files_read_as_pyelftools_reads_them():
    files = real_elf_files()
    assert len(files) >= 4, files
    for path in files:
        want = reference(path)
        assert want is not None, path
        assert ours(path) == want, path
    assert any(interpreter.identify(p).ok for p in files)  # at least one interpreter among them, accepted


def test_damaged_files_are_refused_or_read_alike(tmp_path: Path):
    rng = random.Random(11)
    src = Path(os.path.realpath(sys.executable)).read_bytes()
    damaged = tmp_path / "python"
    differ = 0
    for trial in range(150):
        data = bytearray(src)
        if trial % 3 == 0:
            data = data[:rng.randint(16, min(len(data), 100_000))]
        else:
            for _ in range(rng.randint(1, 4)):
                data[rng.randint(16, min(len(data) - 1, 4096))] = rng.randint(0, 255)
        damaged.write_bytes(bytes(data))
        want, got = reference(str(damaged)), ours(str(damaged))
        if want != got:
            differ += 1
            # a header both cannot read the same way: never one that accepts a file the other finds broken
            # in the fields the interpreter check uses
            assert want is None or got is None, trial
    assert differ <= 5, differ  # pyelftools reads some tables lazily, so a damaged one may pass there
