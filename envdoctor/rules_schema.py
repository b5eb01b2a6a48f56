"""What the rows of each rule table may hold: every key's kind (a checker returning an error message, None when
valid), which keys are required, and which keys identify a row (a user's row with the same identity replaces the
shipped one). rules.py loads the files and validates them against this.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Optional

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version


# ---------------------------------------------------------------- value kinds
# Each kind is a checker returning an error message (None = valid).

def _is_str(v: Any) -> Optional[str]:
    return None if isinstance(v, str) and v.strip() else "must be a non-empty string"


def _is_url(v: Any) -> Optional[str]:
    if not isinstance(v, str) or not re.match(r"^https?://\S+$", v):
        return f"must be an http(s) URL, not {v!r}"
    return None


def _is_version(v: Any) -> Optional[str]:
    if not isinstance(v, str):
        return f"must be a version string, not {v!r}"
    try:
        Version(v)
    except InvalidVersion:
        return f"{v!r} is not a valid version"
    return None


def _is_spec(v: Any) -> Optional[str]:
    if not isinstance(v, str):
        return f"must be a version specifier string, not {v!r}"
    try:
        SpecifierSet(v)
    except InvalidSpecifier:
        return f"{v!r} is not a valid version specifier (PEP 440, e.g. \">=2.0.0rc4,<2.2.0\")"
    return None


_MINOR = re.compile(r"^\d+\.\d+$")


def _is_minor(v: Any) -> Optional[str]:
    return None if isinstance(v, str) and _MINOR.match(v) else f"must be \"MAJOR.MINOR\", not {v!r}"


def _is_cuda_variant(v: Any) -> Optional[str]:
    if v in ("cpu", "mps") or (isinstance(v, str) and _MINOR.match(v)):
        return None
    return f"must be a CUDA version \"12.1\" or \"cpu\", not {v!r}"


def _is_driver(v: Any) -> Optional[str]:
    if isinstance(v, str) and re.match(r"^\d+(\.\d+){0,2}$", v):
        return None
    return f"must be a driver version like \"550.54.15\", not {v!r}"


def _is_regex(v: Any) -> Optional[str]:
    if not isinstance(v, str):
        return f"must be a regular expression string, not {v!r}"
    try:
        re.compile(v)
    except re.error as exc:
        return f"{v!r} is not a valid regular expression: {exc}"
    return None


def _is_int(v: Any) -> Optional[str]:
    return None if isinstance(v, int) and not isinstance(v, bool) else f"must be an integer, not {v!r}"


def _is_bool(v: Any) -> Optional[str]:
    return None if isinstance(v, bool) else f"must be true or false, not {v!r}"


def _one_of(*choices: str) -> Callable[[Any], Optional[str]]:
    def check(v: Any) -> Optional[str]:
        return None if v in choices else f"must be one of {', '.join(choices)}, not {v!r}"
    return check


def _list_of(inner: Callable[[Any], Optional[str]]) -> Callable[[Any], Optional[str]]:
    def check(v: Any) -> Optional[str]:
        if not isinstance(v, list) or not v:
            return "must be a non-empty list"
        for item in v:
            err = inner(item)
            if err:
                return f"item {item!r}: {err}"
        return None
    return check


def _variants(v: Any) -> Optional[str]:
    """{ "2.1" = ["11.8", "12.1", "cpu"], ... }: torch minor -> builds."""
    if not isinstance(v, dict) or not v:
        return "must be a table of torch \"MAJOR.MINOR\" = [CUDA versions or \"cpu\"]"
    for key, builds in v.items():
        if _is_minor(key):
            return f"key {key!r}: {_is_minor(key)}"
        err = _list_of(_is_cuda_variant)(builds)
        if err:
            return f"[{key}] {err}"
    return None


_OS = _one_of("linux", "windows", "macos")
_CONFIDENCE = _one_of("SRC", "LOCAL", "3P", "UNVERIFIED")

Kind = Callable[[Any], Optional[str]]

# table -> key -> (checker, required)
COMMON: dict[str, tuple[Kind, bool]] = {
    "source": (_is_url, True),
    "note": (_is_str, False),
    "confidence": (_CONFIDENCE, False),
}

SCHEMAS: dict[str, dict[str, tuple[Kind, bool]]] = {
    # NVIDIA "CUDA Toolkit and Corresponding Driver Versions" (one row per toolkit release)
    "cuda_driver": {"cuda": (_is_minor, True), "release": (_is_str, True),
                    "linux": (_is_driver, False), "windows": (_is_driver, False)},
    # minor-version compatibility per CUDA major
    "cuda_compat": {"major": (_is_int, True), "minor_compat": (_is_bool, True),
                    "linux": (_is_driver, False), "windows": (_is_driver, False)},
    # driver branch -> newest CUDA it runs (for drivers that do not report their CUDA version)
    "driver_branch": {"branch": (_is_int, True), "cuda": (_is_minor, True)},
    "torch_release": {"torch": (_is_minor, True), "python": (_is_spec, True),
                      "cuda": (_list_of(_is_minor), False), "cuda_experimental": (_list_of(_is_minor), False),
                      "cxx": (_is_str, False), "released": (_is_str, False)},
    "torch_pair": {"torchvision": (_is_version, True), "torch": (_is_spec, True),
                   "torchaudio": (_is_version, False), "python": (_is_spec, False)},
    "torch_arch": {"torch": (_is_spec, True), "cuda": (_is_minor, True), "os": (_OS, True),
                   "arch": (_list_of(_is_str), True), "ptx": (_list_of(_is_str), False)},
    "sm_compat": {"sm": (_is_int, True), "runs_on": (_list_of(_is_int), False),
                  "from": (_is_int, False), "exclude": (_list_of(_is_int), False)},
    "pytorch_index": {"torch": (_is_spec, True), "option": (_one_of("--index-url", "--extra-index-url",
                                                                     "-f"), True),
                      "template": (_is_str, True)},
    "mmcv_flavour": {"distribution": (_is_str, True), "mmcv": (_is_spec, True), "ops": (_is_bool, True)},
    "mmcv_index": {"kind": (_one_of("mim", "docs"), True), "template": (_is_str, True)},
    "mmcv_wheels": {"package": (_one_of("mmcv", "mmcv-full"), True), "mmcv": (_list_of(_is_version), True),
                    "os": (_OS, True), "python": (_is_spec, True), "variants": (_variants, True)},
    "mmcv_consumer": {"package": (_is_str, True), "version": (_is_spec, True), "mmcv": (_is_spec, True),
                      "mmengine": (_is_spec, False)},
    # mmcv._ext's names per mmcv version, op families, which families each consumer's models use (mmcv_ops.toml)
    "mmcv_ext_names": {"mmcv": (_is_spec, True), "kernels": (_list_of(_is_str), True),
                       "info": (_list_of(_is_str), False)},
    "mmcv_op_family": {"family": (_is_str, True), "title": (_is_str, True), "kernels": (_list_of(_is_str), True)},
    "mmcv_consumer_ops": {"package": (_is_str, True), "family": (_is_str, True), "configs": (_is_int, False),
                          "of": (_is_int, False)},
    "mmcv_build": {"kind": (_is_str, True), "title": (_is_str, True), "mmcv": (_is_spec, False),
                   "torch": (_is_spec, False), "python": (_is_spec, False), "setuptools": (_is_spec, False),
                   "fix": (_is_str, False)},
    "build_failure": {"id": (_is_str, True), "cause": (_is_str, True), "pattern": (_is_regex, True),
                      "title": (_is_str, True), "fix": (_is_str, True), "priority": (_is_int, False)},
    "nvcc_host_compiler": {"cuda": (_is_minor, True), "gcc_max": (_is_int, True)},
    "load_error": {"cause": (_is_str, True), "pattern": (_is_regex, True), "priority": (_is_int, False),
                   "platform": (_one_of("linux", "windows", "macos", "any"), False), "title": (_is_str, False)},
    "winerror": {"code": (_is_int, True), "cause": (_is_str, True), "name": (_is_str, True)},
    "win_message": {"code": (_is_int, True), "lang": (_is_str, True), "text": (_is_str, True)},
    "glibc_floor": {"package": (_is_str, True), "version": (_is_spec, True), "glibc": (_is_version, False),
                    "glibcxx": (_is_version, False), "cxxabi": (_is_version, False)},
    "manylinux": {"tag": (_is_str, True), "glibc": (_is_minor, True)},
}

# Identity of a row: a user's row with the same key replaces the shipped one.
KEYS: dict[str, tuple[str, ...]] = {
    "cuda_driver": ("release",),
    "cuda_compat": ("major",),
    "driver_branch": ("branch",),
    "torch_release": ("torch",),
    "torch_pair": ("torchvision",),
    "sm_compat": ("sm",),
    "mmcv_index": ("kind",),
    "build_failure": ("id", "cause"),
    "nvcc_host_compiler": ("cuda",),
    "mmcv_consumer": ("package", "version"),
    "mmcv_ext_names": ("mmcv",),
    "mmcv_op_family": ("family",),
    "mmcv_consumer_ops": ("package", "family"),
    "winerror": ("code",),
    "win_message": ("code", "lang"),
    "manylinux": ("tag",),
}

META_KEYS = {"description", "version"}
