"""Version text as the rule tables use it: PEP 440 parsing, MAJOR.MINOR, a build's +cuXY tag."""

from __future__ import annotations

import functools
import re
from typing import Optional

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version


def parse_version(text: Optional[str]) -> Optional[Version]:
    if not text:
        return None
    try:
        return Version(str(text).strip())
    except InvalidVersion:
        return None


def vkey(text: Optional[str]) -> Version:
    """A sortable Version for any text (unparsable -> 0)."""
    return parse_version(text) or Version("0")


def public(version: str) -> str:
    """'2.5.1+cu124' -> '2.5.1'."""
    return version.split("+", 1)[0].strip()


def minor_of(version: str) -> Optional[str]:
    """'2.5.1+cu124' -> '2.5'; '3.12.4' -> '3.12'."""
    m = re.match(r"^(\d+)\.(\d+)", version.strip())
    return f"{m.group(1)}.{m.group(2)}" if m else None


def local_cuda(version: Optional[str]) -> Optional[str]:
    """'2.5.1+cu124' -> '12.4'; '0.29.1+cu130' -> '13.0'; None otherwise."""
    m = re.search(r"\+cu(\d+)(\d)$", version or "")
    return f"{int(m.group(1))}.{m.group(2)}" if m else None


@functools.lru_cache(maxsize=16384)
def in_spec(version: Optional[str], spec: Optional[str]) -> bool:
    """Version in a PEP 440 specifier, pre-releases included (mmcv ranges start at 2.0.0rc4).

    Cached: the search for an alternative (mmcv_alternatives) asks the same few hundred pairs tens of
    thousands of times, and parsing a SpecifierSet each time cost check 1.5 s on the seed's facts."""
    if spec is None:
        return True
    v = parse_version(public(version)) if version else None
    if v is None:
        return False
    return SpecifierSet(spec).contains(v, prereleases=True)


def cuda_tag(cuda: Optional[str]) -> str:
    """'12.1' -> 'cu121'; None -> 'cpu'."""
    if not cuda:
        return "cpu"
    return "cu" + "".join(cuda.split(".")[:2])
