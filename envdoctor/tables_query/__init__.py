"""Questions answered from the rule tables: which prebuilt wheel fits this environment, which driver a CUDA
build needs, which torchvision pairs with a torch.

Pure functions of the tables (rules.Tables) and a few facts; shared by the checks (to say which fix exists)
and by `envdoctor fix` (to carry it out). One module per subject; every public name is here as well.
"""

from __future__ import annotations

from envdoctor.tables_query.choices import Combination, WheelChoice, install_command
from envdoctor.tables_query.driver import (compat_row, driver_cuda_from_branch, driver_floor, driver_runs,
                                           driver_version_tuple)
from envdoctor.tables_query.mmcv_wheels import (consumer_ranges, flavour, mmcv_alternatives, mmcv_index_url,
                                                mmcv_wheel_for, torch_patch, why_no_mmcv_wheel)
from envdoctor.tables_query.torch_builds import (arch_for, pytorch_index, runs_on, torch_pair_row, torch_release,
                                                 torchvision_for)
from envdoctor.tables_query.versions import cuda_tag, in_spec, local_cuda, minor_of, parse_version, public, vkey

__all__ = [
    "Combination", "WheelChoice", "install_command",
    "compat_row", "driver_cuda_from_branch", "driver_floor", "driver_runs", "driver_version_tuple",
    "consumer_ranges", "flavour", "mmcv_alternatives", "mmcv_index_url", "mmcv_wheel_for", "torch_patch",
    "why_no_mmcv_wheel",
    "arch_for", "pytorch_index", "runs_on", "torch_pair_row", "torch_release", "torchvision_for",
    "cuda_tag", "in_spec", "local_cuda", "minor_of", "parse_version", "public", "vkey",
]
