"""What a query over the tables answers with: a wheel to install, or a whole (torch, CUDA, Python, mmcv) set."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from envdoctor.tables_query.versions import cuda_tag


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


def install_command(choice: WheelChoice, pip: str = "python -m pip") -> str:
    parts = [pip, "install", *choice.pip_args, f'"{choice.package}=={choice.version}"']
    if choice.index_url:
        parts += ["--index-url", choice.index_url]
    if choice.find_links:
        parts += ["-f", choice.find_links]
    return " ".join(parts)
