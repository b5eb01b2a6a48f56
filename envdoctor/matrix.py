"""Questions answered from the rule tables: which prebuilt wheel fits this environment.

Pure functions of the tables and a few facts; shared by the checks (to say which
fix exists) and by `envdoctor fix` (to carry it out). The rules engineer owns the
implementation; the signatures below are the contract both sides code against.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass(frozen=True)
class WheelChoice:
    package: str  # distribution to install: "mmcv", "mmcv-full", "torchvision", "torch"
    version: str  # exact version to pin
    find_links: Optional[str] = None  # e.g. the OpenMMLab index page for this torch/CUDA
    index_url: Optional[str] = None  # e.g. the PyTorch index of torch's CUDA variant
    reason: str = ""  # one line: why this one (for the plan and the finding)
    source: str = ""  # the table row's source URL
    pip_args: tuple[str, ...] = field(default=())  # extra pip arguments the wheel needs


def mmcv_wheel_for(tables: Any, torch_version: str, torch_cuda: Optional[str], python: str, os_name: str,
                   consumers: Optional[dict[str, str]] = None) -> Optional[WheelChoice]:
    """The newest official prebuilt mmcv wheel for this torch (+ its CUDA build, None = CPU), Python ("3.11"),
    OS ("linux" | "windows" | "macos"), inside every installed consumer's mmcv range ({"mmdet": "3.3.0"}).
    None when no official wheel exists for the combination."""
    raise NotImplementedError


def torchvision_for(tables: Any, torch_version: str, torch_cuda: Optional[str], python: str) -> Optional[WheelChoice]:
    """The torchvision release that pairs with this torch, from the PyTorch index of torch's CUDA variant."""
    raise NotImplementedError
