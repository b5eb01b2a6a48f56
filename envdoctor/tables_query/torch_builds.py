"""torch builds in the tables: release rows, the PyTorch index of a CUDA variant, the torchvision that pairs
with a torch, the GPU architectures an official build was compiled for and whether they run on a GPU."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Iterable, Optional

from packaging.version import Version

from envdoctor.tables_query.choices import WheelChoice
from envdoctor.tables_query.versions import cuda_tag, in_spec, minor_of, parse_version, public

if TYPE_CHECKING:
    from envdoctor.rules import Tables


def torch_release(tables: Tables, torch_version: str) -> Optional[dict[str, Any]]:
    m = minor_of(torch_version)
    return next((r for r in tables.rows("torch_release") if r["torch"] == m), None)


def pytorch_index(tables: Tables, torch_version: str, torch_cuda: Optional[str]) -> Optional[tuple[str, str, str]]:
    """(pip option, URL, source) for installing this torch build's family of wheels."""
    for row in tables.rows("pytorch_index"):
        if in_spec(torch_version, row["torch"]):
            return row["option"], row["template"].format(cu=cuda_tag(torch_cuda)), row["source"]
    return None


def torch_pair_row(tables: Tables, torchvision_version: str) -> Optional[dict[str, Any]]:
    """The [[torch_pair]] row for this torchvision: its own, else the newest of its MAJOR.MINOR series."""
    pub = parse_version(public(torchvision_version))
    if pub is None:
        return None
    rows = tables.rows("torch_pair")
    exact = [r for r in rows if parse_version(r["torchvision"]) == pub]
    if exact:
        return exact[-1]
    series = [r for r in rows if minor_of(r["torchvision"]) == minor_of(str(pub))]
    if not series:
        return None
    row = dict(max(series, key=lambda r: Version(r["torchvision"])))
    # a patch release not in the table: hold it to its series' torch minor
    spec_versions = re.findall(r"\d+\.\d+", row["torch"])
    if spec_versions and row["torch"].startswith("=="):
        row["torch"] = f"=={spec_versions[0]}.*"
    row["series_match"] = True
    return row


def torchvision_for(tables: Tables, torch_version: str, torch_cuda: Optional[str],
                    python: str) -> Optional[WheelChoice]:
    """The torchvision release that pairs with this torch, from the PyTorch index of torch's CUDA variant."""
    pub = public(torch_version)
    rows = [r for r in tables.rows("torch_pair") if in_spec(pub, r["torch"])]
    note = ""
    if not rows:
        m = minor_of(pub)
        rows = [r for r in tables.rows("torch_pair")
                if any(minor_of(v) == m for v in re.findall(r"\d+\.\d+(?:\.\d+)?", r["torch"]))]
        note = " (patch pairing not in the table: newest of the series)"
    if not rows:
        return None
    best = max(rows, key=lambda r: Version(r["torchvision"]))
    idx = pytorch_index(tables, pub, torch_cuda)
    index_url = find_links = None
    pip_args: tuple[str, ...] = ()
    if idx is not None:
        option, url, _ = idx
        if option == "--index-url":
            index_url = url
        elif option == "--extra-index-url":
            pip_args = ("--extra-index-url", url)
        else:
            find_links = url
    return WheelChoice(package="torchvision", version=best["torchvision"], index_url=index_url,
                       find_links=find_links, pip_args=pip_args,
                       reason=f"torchvision {best['torchvision']} is built for torch {best['torch']}{note}",
                       source=best["source"])


def arch_for(tables: Tables, torch_version: str, torch_cuda: Optional[str], os_name: str) -> Optional[dict[str, Any]]:
    """The [[torch_arch]] row of an official build (None for unknown builds)."""
    if not torch_cuda:
        return None
    for row in tables.rows("torch_arch"):
        if row["cuda"] == minor_of(torch_cuda) and row["os"] == os_name and in_spec(torch_version, row["torch"]):
            return row
    return None


def _sm_number(entry: str) -> Optional[tuple[str, int]]:
    m = re.match(r"^(sm|compute)_(\d+)[a-z]?$", entry.strip())
    return (m.group(1), int(m.group(2))) if m else None


def runs_on(tables: Tables, capability: str, arch_list: Iterable[str]) -> bool:
    """Does code compiled for `arch_list` (sm_XY SASS, compute_XY PTX) run on a GPU of this capability?

    SASS runs on the same major with an equal or newer minor; PTX is JIT-compiled for any
    newer GPU; torch's exceptions ([[sm_compat]] runs_on / exclude) are honoured.
    """
    m = re.match(r"^(\d+)\.(\d+)$", capability or "")
    if not m:
        return True  # unknown capability: nothing to judge
    cc = int(m.group(1)) * 10 + int(m.group(2))
    compat = {r["sm"]: r for r in tables.rows("sm_compat")}
    for entry in arch_list:
        parsed = _sm_number(entry)
        if parsed is None:
            continue
        kind, sm = parsed
        row = compat.get(sm, {})
        if "runs_on" in row:
            if cc in row["runs_on"]:
                return True
            continue
        if cc in row.get("exclude", []) and cc != sm:
            continue
        if kind == "sm" and sm // 10 == cc // 10 and sm <= cc:
            return True
        if kind == "compute" and sm <= cc:
            return True
    return False
