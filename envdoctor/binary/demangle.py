"""Readable names for mangled C++ symbols: Itanium (gcc/clang, MinGW) and MSVC.

``c++filt`` (binutils) is authoritative for Itanium names and is used when it is on
PATH. Then the maintained pure-Python ``demangle`` package (MIT, Python >= 3.11, a
dependency there): it reads every one of the 60,292 MSVC names torch 2.5.1's c10.dll and
torch_cpu.dll export exactly as LLVM's ``llvm-undname`` does, and Itanium names as
``c++filt`` does but for style (docs/inspect.md has the measurement). There is no c++filt on
Windows, so for a Windows user it is the whole answer. What is left here is only what none
of them does: on Python 3.9/3.10 (no ``demangle``) and without c++filt, a small subset gives
the qualified name, e.g. ``c10::ValueError::ValueError(...)``. Whatever cannot be read is
shown mangled: a wrong demangling would be worse than none.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Iterable, Optional

_CTOR = {"C1", "C2", "C3", "C4", "C5", "CI1", "CI2"}
_DTOR = {"D0", "D1", "D2", "D4", "D5"}
_OPERATORS = {"nw": "new", "na": "new[]", "dl": "delete", "da": "delete[]", "ps": "+", "ng": "-", "ad": "&",
              "de": "*", "co": "~", "pl": "+", "mi": "-", "ml": "*", "dv": "/", "rm": "%", "an": "&", "or": "|",
              "eo": "^", "aS": "=", "pL": "+=", "mI": "-=", "mL": "*=", "dV": "/=", "rM": "%=", "aN": "&=",
              "oR": "|=", "eO": "^=", "ls": "<<", "rs": ">>", "lS": "<<=", "rS": ">>=", "eq": "==", "ne": "!=",
              "lt": "<", "gt": ">", "le": "<=", "ge": ">=", "ss": "<=>", "nt": "!", "aa": "&&", "oo": "||",
              "pp": "++", "mm": "--", "cm": ",", "pm": "->*", "pt": "->", "cl": "()", "ix": "[]"}
_SPECIAL = {"TV": "vtable for ", "TI": "typeinfo for ", "TS": "typeinfo name for ", "TT": "VTT for "}
_STD_SUBST = {"St": "std", "Sa": "std::allocator", "Sb": "std::basic_string", "Ss": "std::string",
              "Si": "std::istream", "So": "std::ostream", "Sd": "std::iostream"}


def demangle_all(names: Iterable[str]) -> dict[str, str]:
    """mangled -> readable for each name; a name that cannot be read maps to itself."""
    names = [n for n in dict.fromkeys(names) if n]
    out = {n: n for n in names}
    itanium = [n for n in names if n.startswith("_Z")]
    out.update(_cxxfilt(itanium))
    out.update(_package([n for n in names if out[n] == n]))
    for n in names:
        if out[n] != n:
            continue
        if n.startswith("_Z"):
            out[n] = itanium_subset(n) or n
        elif n.startswith("?"):
            out[n] = msvc_subset(n) or n
    return out


def _cxxfilt(names: list[str]) -> dict[str, str]:
    """Batch through c++filt (one process for all names); {} when it is absent or fails."""
    exe = shutil.which("c++filt")
    if not names or exe is None:
        return {}
    try:
        proc = subprocess.run([exe], input="\n".join(names) + "\n", capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return {}
    lines = proc.stdout.splitlines()
    if proc.returncode != 0 or len(lines) != len(names):
        return {}
    return {n: d for n, d in zip(names, lines) if d and d != n}


def _package(names: list[str]) -> dict[str, str]:
    """Through the `demangle` package where it is installed; {} without it."""
    if not names:
        return {}
    try:
        import demangle as package  # absolute: the PyPI package, not this module
    except ImportError:
        return {}
    out: dict[str, str] = {}
    for n in names:
        try:
            d = package.demangle(n)
        except Exception:  # noqa: BLE001 - a name it cannot read stays mangled
            continue
        if isinstance(d, str) and d and d != n:
            out[n] = d
    return out


# --- Itanium: qualified names only -------------------------------------------------------------


class _Stop(Exception):
    pass


def itanium_subset(sym: str) -> Optional[str]:
    """``_ZN3c1010ValueErrorC1E...`` -> ``c10::ValueError::ValueError(...)``; None if not understood.

    Reads the (nested) name of a function or variable: source names, ``St``, ABI tags,
    constructors and destructors, ``K`` (const member). Template arguments and the
    parameter list are not decoded: they are shown as ``<...>`` and ``(...)``.
    """
    if not sym.startswith("_Z"):
        return None
    s = sym[2:]
    prefix = _SPECIAL.get(s[:2], "")
    if prefix:
        s = s[2:]
    if s.startswith("L"):  # internal linkage
        s = s[1:]
    try:
        parts, const, rest = _itanium_name(s)
    except (_Stop, IndexError, ValueError):
        return None
    if not parts:
        return None
    text = "::".join(parts)
    if prefix:
        return prefix + text
    if not rest:  # a variable: no parameter list
        return text
    return text + "(...)" + (" const" if const else "")


def _source_name(s: str, i: int) -> tuple[str, int]:
    m = re.match(r"\d+", s[i:])
    if not m:
        raise _Stop
    n = int(m.group())
    start = i + len(m.group())
    name = s[start:start + n]
    if len(name) != n:
        raise _Stop
    if name.startswith("_GLOBAL__N"):
        name = "(anonymous namespace)"
    return name, start + n


def _itanium_name(s: str) -> tuple[list[str], bool, str]:
    parts: list[str] = []
    const = False
    i = 0
    if s.startswith("N"):
        i = 1
        while s[i] in "KVrRO":
            const = const or s[i] == "K"
            i += 1
        end_nested = True
    else:
        end_nested = False
    while i < len(s):
        c = s[i]
        if end_nested and c == "E":
            return parts, const, s[i + 1:]
        if s.startswith(("St", "Sa", "Sb", "Ss", "Si", "So", "Sd"), i):
            parts.append(_STD_SUBST[s[i:i + 2]])
            i += 2
            if s[i - 1] == "t":
                continue
        elif c.isdigit():
            name, i = _source_name(s, i)
            parts.append(name)
        elif c == "B":  # ABI tag, e.g. DeviceTypeName[abi:cxx11]
            tag, i = _source_name(s, i + 1)
            if parts:
                parts[-1] += f"[abi:{tag}]"
        elif s.startswith(tuple(_CTOR), i) or s.startswith(tuple(_DTOR), i):
            code = s[i:i + 3] if s[i:i + 2] == "CI" else s[i:i + 2]
            base = parts[-1].split("[")[0].split("<")[0] if parts else "?"
            parts.append(("~" if code[0] == "D" else "") + base)
            i += len(code)
        elif s[i:i + 2] in _OPERATORS:
            parts.append("operator" + _OPERATORS[s[i:i + 2]])
            i += 2
        elif c == "I":  # template arguments: not decoded
            if parts:
                parts[-1] += "<...>"
            i = _skip_template_args(s, i)
        else:
            raise _Stop
        if not end_nested:
            return parts, const, s[i:]
    raise _Stop


def _skip_template_args(s: str, i: int) -> int:
    """Index after the template-args starting at s[i] == 'I' (balancing I/N/E by a rough count)."""
    depth = 0
    while i < len(s):
        c = s[i]
        if c.isdigit():  # a source name may contain 'E' or 'I': jump over it
            _, i = _source_name(s, i)
            continue
        if c in "IN":
            depth += 1
        elif c == "E":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise _Stop


# --- MSVC: qualified names only ---------------------------------------------------------------

_MSVC_SPECIAL = {"0": "{ctor}", "1": "{dtor}", "2": "operator new", "3": "operator delete", "4": "operator=",
                 "8": "operator==", "9": "operator!=", "A": "operator[]", "R": "operator()"}


def msvc_subset(sym: str) -> Optional[str]:
    """``?foo@c10@@YAXXZ`` -> ``c10::foo(...)``; ``??0Error@c10@@...`` -> ``c10::Error::Error(...)``."""
    if not sym.startswith("?"):
        return None
    s = sym[1:]
    special = None
    if s.startswith("?") and len(s) > 1 and s[1] in _MSVC_SPECIAL:
        special = _MSVC_SPECIAL[s[1]]
        s = s[2:]
    elif s.startswith("?"):
        return None  # other special names (vftables, RTTI ...): leave mangled
    names: list[str] = []  # back-reference table
    parts: list[str] = []
    i = 0
    while i < len(s):
        if s[i] == "@":  # "@@" ends the qualified name (we are on the second '@')
            break
        if s[i].isdigit():
            idx = int(s[i])
            if idx >= len(names):
                return None
            parts.append(names[idx])
            i += 1
            continue
        if s.startswith("?$", i):  # template name: name@args@ -- keep the name, drop the arguments
            j = s.find("@", i + 2)
            if j < 0:
                return None
            parts.append(s[i + 2:j] + "<...>")
            depth_end = s.find("@@", j)
            if depth_end < 0:
                return None
            i = depth_end + 1
            if i < len(s) and s[i] == "@":
                i += 1
            continue
        j = s.find("@", i)
        if j < 0:
            return None
        frag = s[i:j]
        if not frag or not re.match(r"^[A-Za-z_$][\w$]*$", frag):
            return None
        parts.append(frag)
        names.append(frag)
        i = j + 1
    if not parts:
        return None
    scope = list(reversed(parts))
    if special:
        cls = scope[-1].split("<")[0] if scope else "?"
        if special == "{ctor}":
            scope.append(cls)
        elif special == "{dtor}":
            scope.append("~" + cls)
        else:
            scope.append(special)
    tail = s[i + 1:] if i < len(s) else ""
    is_function = bool(tail) and tail[0] in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" and tail[0] not in "0123456789"
    # data symbols are '3'..'9' codes after "@@"; functions are letter codes (Y = global function, Q/U/A... members)
    return "::".join(scope) + ("(...)" if is_function else "")
