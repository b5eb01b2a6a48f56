"""The NVIDIA driver in the tables: the minimum driver of a CUDA release, minor-version compatibility, and the
newest CUDA a driver branch runs."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Optional

from envdoctor.tables_query.versions import minor_of, parse_version

if TYPE_CHECKING:
    from envdoctor.rules import Tables


def driver_version_tuple(text: Optional[str]) -> Optional[tuple[int, ...]]:
    if not text or not re.match(r"^\d+(\.\d+)*$", text.strip()):
        return None
    return tuple(int(p) for p in text.strip().split("."))


def driver_floor(tables: Tables, cuda: str, os_name: str) -> Optional[tuple[str, str]]:
    """(minimum driver, source) of the first release of this CUDA minor ("12.4" -> 12.4 GA's row)."""
    col = "windows" if os_name == "windows" else "linux"
    rows = [r for r in tables.rows("cuda_driver") if r["cuda"] == minor_of(cuda) and r.get(col)]
    if not rows:
        return None
    row = min(rows, key=lambda r: driver_version_tuple(r[col]) or (0,))
    return row[col], row["source"]


def compat_row(tables: Tables, cuda: str) -> Optional[dict[str, Any]]:
    major = int(cuda.split(".")[0])
    return next((r for r in tables.rows("cuda_compat") if r["major"] == major), None)


def driver_runs(tables: Tables, driver: Optional[str], driver_cuda: Optional[str], build_cuda: str,
                os_name: str) -> bool:
    """Can this driver run a +cuXY build? Its own CUDA is new enough, or (CUDA >= 11) minor-version
    compatibility: same major and a driver at or above the family floor. Unknown driver: True."""
    dcv = parse_version(driver_cuda) if driver_cuda else None
    b = parse_version(build_cuda)
    if b is None or (dcv is None and not driver):
        return True
    if dcv is not None and b <= dcv:
        return True
    row = compat_row(tables, build_cuda)
    col = "windows" if os_name == "windows" else "linux"
    if row is None or not row.get("minor_compat") or not row.get(col):
        return False
    if dcv is not None and dcv.major != b.major:
        return False
    have, floor = driver_version_tuple(driver), driver_version_tuple(row[col])
    return bool(have and floor and have >= floor)


def driver_cuda_from_branch(tables: Tables, driver: Optional[str]) -> Optional[str]:
    """The newest CUDA a driver branch supports (for drivers that do not report it)."""
    t = driver_version_tuple(driver)
    if not t:
        return None
    best = None
    for row in tables.rows("driver_branch"):
        if row["branch"] <= t[0] and (best is None or row["branch"] > best["branch"]):
            best = row
    return best["cuda"] if best else None
