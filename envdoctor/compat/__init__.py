"""envdoctor compat layer: exact mmcv ops in PyTorch, with mmcv's API and ``_ext`` signatures.

* :mod:`.ops` -- functional ``deform_conv2d`` / ``modulated_deform_conv2d``
  (backends ``"torch"``, ``"torchvision"``, ``"auto"``);
* :mod:`.mmcv_api` -- ``DeformConv2d``, ``DeformConv2dPack``,
  ``ModulatedDeformConv2d``, ``ModulatedDeformConv2dPack`` with mmcv's
  names, arguments and state_dict keys;
* :mod:`.ext` -- a stand-in for ``mmcv._ext`` with mmcv's kernel signatures
  (deformable convolution, :mod:`.nms`, :mod:`.roi_align`, :mod:`.focal_loss`);
* :mod:`.hook` -- the ``.pth`` import hook and ``enable()`` / ``disable()``.

Self-contained: it imports only the standard library, torch and (lazily)
torchvision, and uses relative imports only, so it can be copied into another
environment's site-packages under a private name (see :func:`.hook.enable`).
Importing this package does not import torch; the names below are loaded on
first use.
"""

_LAZY = {
    "deform_conv2d": "mmcv_api",
    "modulated_deform_conv2d": "mmcv_api",
    "DeformConv2dFunction": "mmcv_api",
    "ModulatedDeformConv2dFunction": "mmcv_api",
    "DeformConv2d": "mmcv_api",
    "DeformConv2dPack": "mmcv_api",
    "ModulatedDeformConv2d": "mmcv_api",
    "ModulatedDeformConv2dPack": "mmcv_api",
    "CompatUnsupportedError": "ops",
    "CompatOpUnavailableError": "ext",
    "enable": "hook",
    "disable": "hook",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError("module %r has no attribute %r" % (__name__, name))
    import importlib

    value = getattr(importlib.import_module("." + mod, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
