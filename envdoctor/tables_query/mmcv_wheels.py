"""mmcv in the tables: its flavours, the OpenMMLab index, consumers' ranges, which official prebuilt wheel fits an
environment (or why none does), and the nearest (torch, CUDA, Python) sets that have one.

The signature of `mmcv_wheel_for` is the contract the checks and `envdoctor fix` code against (only keyword
arguments with defaults are added)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Optional

from packaging.version import Version

from envdoctor.tables_query.choices import Combination, WheelChoice
from envdoctor.tables_query.torch_builds import pytorch_index, torchvision_for
from envdoctor.tables_query.versions import cuda_tag, in_spec, minor_of, parse_version

if TYPE_CHECKING:
    from envdoctor.rules import Tables


def flavour(tables: Tables, distribution: str, version: Optional[str]) -> Optional[dict[str, Any]]:
    name = distribution.lower().replace("_", "-")
    for row in tables.rows("mmcv_flavour"):
        if row["distribution"] == name and (version is None or in_spec(version, row["mmcv"])):
            return row
    return None


def mmcv_index_url(tables: Tables, torch_version: str, torch_cuda: Optional[str], kind: str = "mim") -> Optional[str]:
    m = re.match(r"^(\d+)\.(\d+)", torch_version)
    row = next((r for r in tables.rows("mmcv_index") if r["kind"] == kind), None)
    if not m or row is None:
        return None
    return row["template"].format(cu=cuda_tag(torch_cuda), major=m.group(1), minor=m.group(2))


def consumer_ranges(tables: Tables, consumers: Optional[dict[str, str]]) -> list[dict[str, Any]]:
    """The [[mmcv_consumer]] rows that apply to the installed consumers ({"mmdet": "3.3.0"})."""
    out = []
    for name, version in (consumers or {}).items():
        key = name.lower().replace("_", "-")
        for row in tables.rows("mmcv_consumer"):
            if row["package"] == key and in_spec(version, row["version"]):
                out.append(dict(row, installed=version))
                break
    return out


def _python_ok(tables: Tables, row: dict[str, Any], torch_minor: str, python: str) -> bool:
    if not in_spec(python, row["python"]):
        return False
    rel = next((r for r in tables.rows("torch_release") if r["torch"] == torch_minor), None)
    # a wheel cannot exist for a Python that torch itself had no wheels for
    return rel is None or in_spec(python, rel["python"])


def _wheel_candidates(tables: Tables, torch_minor: str, variant: str, python: str, os_name: str,
                      consumers: Optional[dict[str, str]],
                      mmcv_major: Optional[int]) -> list[tuple[Version, dict[str, Any]]]:
    ranges = consumer_ranges(tables, consumers)
    out = []
    for row in tables.rows("mmcv_wheels"):
        if row["os"] != os_name or variant not in row["variants"].get(torch_minor, []):
            continue
        if not _python_ok(tables, row, torch_minor, python):
            continue
        for ver in row["mmcv"]:
            v = Version(ver)
            if mmcv_major is not None and v.major != mmcv_major:
                continue
            if all(in_spec(ver, r["mmcv"]) for r in ranges):
                out.append((v, row))
    return out


def mmcv_wheel_for(tables: Tables, torch_version: str, torch_cuda: Optional[str], python: str, os_name: str,
                   consumers: Optional[dict[str, str]] = None, *,
                   mmcv_major: Optional[int] = None) -> Optional[WheelChoice]:
    """The newest official prebuilt mmcv wheel for this torch (+ its CUDA build, None = CPU), Python ("3.11"),
    OS ("linux" | "windows" | "macos"), inside every installed consumer's mmcv range ({"mmdet": "3.3.0"}).
    None when no official wheel exists for the combination. `mmcv_major` keeps the series (1 = mmcv-full)."""
    torch_minor = minor_of(torch_version)
    py = minor_of(python)
    if torch_minor is None or py is None:
        return None
    variant = "cpu" if not torch_cuda else minor_of(torch_cuda) or torch_cuda
    found = _wheel_candidates(tables, torch_minor, variant, py, os_name, consumers, mmcv_major)
    if not found:
        return None
    version, row = max(found, key=lambda vr: vr[0])
    pkg = row["package"]
    cu = cuda_tag(torch_cuda)
    return WheelChoice(
        package=pkg, version=str(version), find_links=mmcv_index_url(tables, torch_version, torch_cuda),
        reason=f"official {pkg} {version} wheel for torch {torch_minor} ({cu}), Python {py}, {os_name}",
        source=row["source"], pip_args=(f"--only-binary={pkg}", "--no-cache-dir"),
    )


def why_no_mmcv_wheel(tables: Tables, torch_version: str, torch_cuda: Optional[str], python: str,
                      os_name: str) -> list[str]:
    """Plain reasons no official wheel exists (each one names the dimension that has none)."""
    torch_minor = minor_of(torch_version) or torch_version
    py = minor_of(python) or python
    variant = "cpu" if not torch_cuda else minor_of(torch_cuda) or torch_cuda
    rows = tables.rows("mmcv_wheels")
    reasons = []
    os_rows = [r for r in rows if r["os"] == os_name]
    if not os_rows:
        return [f"no official mmcv wheels for {os_name} at all"]
    torches = sorted({t for r in os_rows for t in r["variants"]}, key=lambda t: Version(t))
    if torch_minor not in torches:
        reasons.append(f"no mmcv wheel was built for torch {torch_minor} on {os_name} "
                       f"(the newest is torch {torches[-1]}; mmcv 2.2.0 of 2024-04 is the last release)")
    else:
        if not any(variant in r["variants"].get(torch_minor, []) for r in os_rows):
            have = sorted({c for r in os_rows for c in r["variants"].get(torch_minor, [])})
            reasons.append(f"no wheel for the {cuda_tag(torch_cuda)} build of torch {torch_minor} "
                           f"(wheels exist for {', '.join(have)})")
    if not any(in_spec(py, r["python"]) for r in os_rows):
        have = sorted({p for r in os_rows for p in _pythons(r["python"], None)}, key=Version)
        reasons.append(f"no mmcv wheel for Python {py} on {os_name} (Python {have[0]} to {have[-1]} only)")
    if not reasons:
        reasons.append(f"no mmcv wheel for Python {py} with torch {torch_minor} ({cuda_tag(torch_cuda)}) on {os_name}")
    return reasons


def mmcv_alternatives(tables: Tables, os_name: str, python: str, *, mmcv_major: Optional[int] = None,
                      consumers: Optional[dict[str, str]] = None, driver_cuda: Optional[str] = None,
                      cuda_wanted: Optional[bool] = None, limit: int = 2) -> list[Combination]:
    """The newest (torch, CUDA, Python, mmcv) combinations with official wheels on this OS, preferring
    this Python, then the nearest one; CUDA builds newer than the driver supports are skipped;
    `cuda_wanted` False/True keeps only CPU/CUDA builds."""
    py = minor_of(python) or python
    # candidates first, ranked by a cheap key; the Combination (torchvision pairing, index URLs: the costly
    # part) is built only for the few kept, not for each of the ~1,000 candidates
    cands: list[tuple[tuple[Any, ...], dict[str, Any], str, str, Optional[str], str]] = []
    ranges = consumer_ranges(tables, consumers)
    drv = parse_version(driver_cuda) if driver_cuda else None
    for row in tables.rows("mmcv_wheels"):
        if row["os"] != os_name:
            continue
        for torch_minor, variants in row["variants"].items():
            rel = next((r for r in tables.rows("torch_release") if r["torch"] == torch_minor), None)
            for ver in row["mmcv"]:
                v = Version(ver)
                if mmcv_major is not None and v.major != mmcv_major:
                    continue
                if not all(in_spec(ver, r["mmcv"]) for r in ranges):
                    continue
                for variant in variants:
                    if variant == "mps":
                        continue
                    cuda = None if variant == "cpu" else variant
                    if cuda_wanted is not None and (cuda is not None) != cuda_wanted:
                        continue
                    if cuda and drv is not None and Version(cuda) > drv:
                        continue
                    for cand_py in _pythons(row["python"], rel):
                        # prefer: same Python, then newest torch, newest mmcv, a CUDA build, newest CUDA
                        same = cand_py == py
                        dist = abs(Version(cand_py).minor - Version(py).minor) if not same else 0
                        key = (same, -dist, Version(torch_minor), v, cuda is not None, Version(cuda or "0"))
                        cands.append((key, row, torch_minor, ver, cuda, cand_py))
    # stable sort on the key alone, as before: equal keys keep the table's order
    cands.sort(key=lambda c: c[0], reverse=True)
    out: list[Combination] = []
    seen_py: set[str] = set()
    for _, row, torch_minor, ver, cuda, cand_py in cands:
        # one combination per Python version: the best one
        if cand_py in seen_py:
            continue
        seen_py.add(cand_py)
        out.append(_combination(tables, row, torch_minor, ver, cuda, cand_py, os_name))
        if len(out) >= limit:
            break
    return out


def _combination(tables: Tables, row: dict[str, Any], torch_minor: str, ver: str, cuda: Optional[str],
                 cand_py: str, os_name: str) -> Combination:
    torch_full = torch_patch(tables, torch_minor)
    choice = WheelChoice(
        package=row["package"], version=ver,
        find_links=mmcv_index_url(tables, torch_minor + ".0", cuda),
        reason=f"official {row['package']} {ver} wheel for torch {torch_minor} "
               f"({cuda_tag(cuda)}), Python {cand_py}, {os_name}",
        source=row["source"], pip_args=(f"--only-binary={row['package']}", "--no-cache-dir"))
    tv = torchvision_for(tables, torch_full, cuda, cand_py)
    idx = pytorch_index(tables, torch_full, cuda)
    return Combination(
        torch=torch_full, cuda=cuda, python=cand_py, mmcv=choice, torchvision=tv,
        torch_index=(idx[0], idx[1]) if idx else ("--index-url", "https://download.pytorch.org/whl/"
                                                 + cuda_tag(cuda)))


def _pythons(spec: str, rel: Optional[dict[str, Any]]) -> list[str]:
    cands = [f"3.{n}" for n in range(5, 16)]
    return [p for p in cands if in_spec(p, spec) and (rel is None or in_spec(p, rel["python"]))]


def torch_patch(tables: Tables, torch_minor: str) -> str:
    """The newest torch patch release of a minor that the pair table knows ("2.3" -> "2.3.1")."""
    best = None
    for row in tables.rows("torch_pair"):
        for v in re.findall(r"==(\d+\.\d+\.\d+)", row["torch"]):
            if minor_of(v) == torch_minor and (best is None or Version(v) > Version(best)):
                best = v
    return best or f"{torch_minor}.0"
