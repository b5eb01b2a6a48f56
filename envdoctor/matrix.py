"""Questions answered from the rule tables: which prebuilt wheel fits this environment.

Pure functions of the tables and a few facts; shared by the checks (to say which
fix exists) and by `envdoctor fix` (to carry it out). The rules engineer owns the
implementation; the signatures of `mmcv_wheel_for` and `torchvision_for` are the
contract both sides code against (only keyword arguments with defaults are added).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version


@dataclass(frozen=True)
class WheelChoice:
    package: str  # distribution to install: "mmcv", "mmcv-full", "torchvision", "torch"
    version: str  # exact version to pin
    find_links: Optional[str] = None  # e.g. the OpenMMLab index page for this torch/CUDA
    index_url: Optional[str] = None  # e.g. the PyTorch index of torch's CUDA variant
    reason: str = ""  # one line: why this one (for the plan and the finding)
    source: str = ""  # the table row's source URL
    pip_args: tuple[str, ...] = field(default=())  # extra pip arguments the wheel needs


@dataclass(frozen=True)
class Combination:
    """A (torch, CUDA, Python, mmcv) set that has official wheels: the alternative to a compat layer."""

    torch: str  # "2.3.1"
    cuda: Optional[str]  # "12.1", None = CPU
    python: str  # "3.11"
    mmcv: WheelChoice
    torchvision: Optional[WheelChoice] = None
    torch_index: tuple[str, str] = ("--index-url", "https://download.pytorch.org/whl/cpu")  # (pip option, URL)

    def commands(self, pip: str = "python -m pip") -> list[str]:
        tv = f" torchvision=={self.torchvision.version}" if self.torchvision else ""
        option, url = self.torch_index
        pin = f"torch=={self.torch}" + (f"+{cuda_tag(self.cuda)}" if option == "-f" else "")
        cmds = [f"{pip} install {pin}{tv} {option} {url}"]
        cmds.append(install_command(self.mmcv, pip))
        return cmds


# ---------------------------------------------------------------- versions

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


def in_spec(version: Optional[str], spec: Optional[str]) -> bool:
    """Version in a PEP 440 specifier, pre-releases included (mmcv ranges start at 2.0.0rc4)."""
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


# ---------------------------------------------------------------- torch

def torch_release(tables: Any, torch_version: str) -> Optional[dict[str, Any]]:
    m = minor_of(torch_version)
    return next((r for r in tables.rows("torch_release") if r["torch"] == m), None)


def pytorch_index(tables: Any, torch_version: str, torch_cuda: Optional[str]) -> Optional[tuple[str, str, str]]:
    """(pip option, URL, source) for installing this torch build's family of wheels."""
    for row in tables.rows("pytorch_index"):
        if in_spec(torch_version, row["torch"]):
            return row["option"], row["template"].format(cu=cuda_tag(torch_cuda)), row["source"]
    return None


def torch_pair_row(tables: Any, torchvision_version: str) -> Optional[dict[str, Any]]:
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


def torchvision_for(tables: Any, torch_version: str, torch_cuda: Optional[str], python: str) -> Optional[WheelChoice]:
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


def arch_for(tables: Any, torch_version: str, torch_cuda: Optional[str], os_name: str) -> Optional[dict[str, Any]]:
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


def runs_on(tables: Any, capability: str, arch_list: Iterable[str]) -> bool:
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


# ---------------------------------------------------------------- driver

def driver_version_tuple(text: Optional[str]) -> Optional[tuple[int, ...]]:
    if not text or not re.match(r"^\d+(\.\d+)*$", text.strip()):
        return None
    return tuple(int(p) for p in text.strip().split("."))


def driver_floor(tables: Any, cuda: str, os_name: str) -> Optional[tuple[str, str]]:
    """(minimum driver, source) of the first release of this CUDA minor ("12.4" -> 12.4 GA's row)."""
    col = "windows" if os_name == "windows" else "linux"
    rows = [r for r in tables.rows("cuda_driver") if r["cuda"] == minor_of(cuda) and r.get(col)]
    if not rows:
        return None
    row = min(rows, key=lambda r: driver_version_tuple(r[col]) or (0,))
    return row[col], row["source"]


def compat_row(tables: Any, cuda: str) -> Optional[dict[str, Any]]:
    major = int(cuda.split(".")[0])
    return next((r for r in tables.rows("cuda_compat") if r["major"] == major), None)


def driver_runs(tables: Any, driver: Optional[str], driver_cuda: Optional[str], build_cuda: str,
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


def driver_cuda_from_branch(tables: Any, driver: Optional[str]) -> Optional[str]:
    """The newest CUDA a driver branch supports (for drivers that do not report it)."""
    t = driver_version_tuple(driver)
    if not t:
        return None
    best = None
    for row in tables.rows("driver_branch"):
        if row["branch"] <= t[0] and (best is None or row["branch"] > best["branch"]):
            best = row
    return best["cuda"] if best else None


# ---------------------------------------------------------------- mmcv

def flavour(tables: Any, distribution: str, version: Optional[str]) -> Optional[dict[str, Any]]:
    name = distribution.lower().replace("_", "-")
    for row in tables.rows("mmcv_flavour"):
        if row["distribution"] == name and (version is None or in_spec(version, row["mmcv"])):
            return row
    return None


def mmcv_index_url(tables: Any, torch_version: str, torch_cuda: Optional[str], kind: str = "mim") -> Optional[str]:
    m = re.match(r"^(\d+)\.(\d+)", torch_version)
    row = next((r for r in tables.rows("mmcv_index") if r["kind"] == kind), None)
    if not m or row is None:
        return None
    return row["template"].format(cu=cuda_tag(torch_cuda), major=m.group(1), minor=m.group(2))


def consumer_ranges(tables: Any, consumers: Optional[dict[str, str]]) -> list[dict[str, Any]]:
    """The [[mmcv_consumer]] rows that apply to the installed consumers ({"mmdet": "3.3.0"})."""
    out = []
    for name, version in (consumers or {}).items():
        key = name.lower().replace("_", "-")
        for row in tables.rows("mmcv_consumer"):
            if row["package"] == key and in_spec(version, row["version"]):
                out.append(dict(row, installed=version))
                break
    return out


def _python_ok(tables: Any, row: dict[str, Any], torch_minor: str, python: str) -> bool:
    if not in_spec(python, row["python"]):
        return False
    rel = next((r for r in tables.rows("torch_release") if r["torch"] == torch_minor), None)
    # a wheel cannot exist for a Python that torch itself had no wheels for
    return rel is None or in_spec(python, rel["python"])


def install_command(choice: WheelChoice, pip: str = "python -m pip") -> str:
    parts = [pip, "install", *choice.pip_args, f'"{choice.package}=={choice.version}"']
    if choice.index_url:
        parts += ["--index-url", choice.index_url]
    if choice.find_links:
        parts += ["-f", choice.find_links]
    return " ".join(parts)


def _wheel_candidates(tables: Any, torch_minor: str, variant: str, python: str, os_name: str,
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


def mmcv_wheel_for(tables: Any, torch_version: str, torch_cuda: Optional[str], python: str, os_name: str,
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


def why_no_mmcv_wheel(tables: Any, torch_version: str, torch_cuda: Optional[str], python: str,
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


def mmcv_alternatives(tables: Any, os_name: str, python: str, *, mmcv_major: Optional[int] = None,
                      consumers: Optional[dict[str, str]] = None, driver_cuda: Optional[str] = None,
                      cuda_wanted: Optional[bool] = None, limit: int = 2) -> list[Combination]:
    """The newest (torch, CUDA, Python, mmcv) combinations with official wheels on this OS, preferring
    this Python, then the nearest one; CUDA builds newer than the driver supports are skipped;
    `cuda_wanted` False/True keeps only CPU/CUDA builds."""
    py = minor_of(python) or python
    combos: list[tuple[tuple[Any, ...], Combination]] = []
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
                        torch_full = _torch_patch(tables, torch_minor)
                        choice = WheelChoice(
                            package=row["package"], version=ver,
                            find_links=mmcv_index_url(tables, torch_minor + ".0", cuda),
                            reason=f"official {row['package']} {ver} wheel for torch {torch_minor} "
                                   f"({cuda_tag(cuda)}), Python {cand_py}, {os_name}",
                            source=row["source"], pip_args=(f"--only-binary={row['package']}", "--no-cache-dir"))
                        tv = torchvision_for(tables, torch_full, cuda, cand_py)
                        idx = pytorch_index(tables, torch_full, cuda)
                        combos.append((key, Combination(
                            torch=torch_full, cuda=cuda, python=cand_py, mmcv=choice, torchvision=tv,
                            torch_index=(idx[0], idx[1]) if idx else ("--index-url", "https://download.pytorch.org/whl/"
                                                                     + cuda_tag(cuda)))))
    combos.sort(key=lambda kc: kc[0], reverse=True)
    out: list[Combination] = []
    seen_py: set[str] = set()
    for _, combo in combos:
        # one combination per Python version: the best one
        if combo.python in seen_py:
            continue
        seen_py.add(combo.python)
        out.append(combo)
        if len(out) >= limit:
            break
    return out


def _pythons(spec: str, rel: Optional[dict[str, Any]]) -> list[str]:
    cands = [f"3.{n}" for n in range(5, 16)]
    return [p for p in cands if in_spec(p, spec) and (rel is None or in_spec(p, rel["python"]))]


def _torch_patch(tables: Any, torch_minor: str) -> str:
    """The newest torch patch release of a minor that the pair table knows ("2.3" -> "2.3.1")."""
    best = None
    for row in tables.rows("torch_pair"):
        for v in re.findall(r"==(\d+\.\d+\.\d+)", row["torch"]):
            if minor_of(v) == torch_minor and (best is None or Version(v) > Version(best)):
                best = v
    return best or f"{torch_minor}.0"
