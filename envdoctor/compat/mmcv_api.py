"""mmcv's deformable-convolution modules and functions, on top of :mod:`.ops`.

Same class names, constructor arguments (including the legacy
``deformable_groups`` keyword), attributes, parameter names, state_dict keys,
initialisation (and RNG consumption order), assertions and version-2
checkpoint-key migration as ``mmcv.ops.DeformConv2d``,
``DeformConv2dPack``, ``ModulatedDeformConv2d`` and
``ModulatedDeformConv2dPack`` (mmcv 1.x and 2.x share these).  They can be
subclassed the way E2FGVI and BasicVSR++ subclass ``ModulatedDeformConv2d``.

The computation is :func:`.ops.deform_conv2d` /
:func:`.ops.modulated_deform_conv2d` with the backend given by the class
attribute ``compat_backend`` (default ``"auto"``).

Differences from mmcv, by design: the classes are not put in mmcv's registry
(this module must not import mmcv), and the ``im2col_step`` chunking of
DCNv1 is only validated, not used (it changes summation order only).
"""

import functools
import logging
import math
import warnings

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.utils import _pair, _single

from . import ops

__all__ = [
    "DeformConv2dFunction",
    "ModulatedDeformConv2dFunction",
    "deform_conv2d",
    "modulated_deform_conv2d",
    "DeformConv2d",
    "DeformConv2dPack",
    "ModulatedDeformConv2d",
    "ModulatedDeformConv2dPack",
]

logger = logging.getLogger(__name__)


def _conv_attributes(module, in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                     deform_groups):
    """The attributes both mmcv conv classes set (subclasses such as E2FGVI's read them)."""
    module.in_channels = in_channels
    module.out_channels = out_channels
    module.kernel_size = _pair(kernel_size)
    module.stride = _pair(stride)
    module.padding = _pair(padding)
    module.dilation = _pair(dilation)
    module.groups = groups
    module.deform_groups = deform_groups
    # like nn.Conv2d, for code that inspects conv layers
    module.transposed = False
    module.output_padding = _single(0)


def _renamed_kwarg(old, new, cls_name):
    """Accept the deprecated keyword ``old`` for ``new`` (mmcv's deprecated_api_warning)."""

    def deco(init):
        @functools.wraps(init)
        def wrapper(self, *args, **kwargs):
            if old in kwargs:
                assert new not in kwargs, (
                    "both the deprecated argument `%s` and its replacement `%s` were given "
                    "to %s; pass only `%s`" % (old, new, cls_name, new))
                warnings.warn('"%s" is deprecated in `%s`, please use "%s" instead'
                              % (old, cls_name, new), DeprecationWarning, stacklevel=2)
                kwargs[new] = kwargs.pop(old)
            return init(self, *args, **kwargs)

        return wrapper

    return deco


def _output_size(input, weight, stride, padding, dilation):
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    size = (input.size(0), weight.size(0))
    for d in range(input.dim() - 2):
        k = dilation[d] * (weight.size(d + 2) - 1) + 1
        size += ((input.size(d + 2) + 2 * padding[d] - k) // stride[d] + 1,)
    if not all(s > 0 for s in size):
        raise ValueError("convolution input is too small (output would be "
                         + "x".join(map(str, size)) + ")")
    return size


class DeformConv2dFunction(object):
    """Stand-in for mmcv's ``DeformConv2dFunction``: use ``DeformConv2dFunction.apply``.

    ``apply(input, offset, weight, stride=1, padding=0, dilation=1, groups=1,
    deform_groups=1, bias=False, im2col_step=32)`` -- the positional order of
    mmcv's ``Function.apply``.
    """

    backend = "auto"

    @staticmethod
    def apply(input, offset, weight, stride=1, padding=0, dilation=1, groups=1,
              deform_groups=1, bias=False, im2col_step=32):
        if input is not None and input.dim() != 4:
            raise ValueError(
                "Expected 4D tensor as input, got %dD tensor instead." % input.dim())
        assert bias is False, "Only support bias is False."
        _output_size(input, weight, stride, padding, dilation)
        if input.size(0) > 0:
            cur_im2col_step = min(im2col_step, input.size(0))
            assert (input.size(0) % cur_im2col_step) == 0, \
                "batch size must be divisible by im2col_step"
        return ops.deform_conv2d(input, offset, weight, stride, padding, dilation, groups,
                                 deform_groups, False, im2col_step,
                                 backend=DeformConv2dFunction.backend)


class ModulatedDeformConv2dFunction(object):
    """Stand-in for mmcv's ``ModulatedDeformConv2dFunction``: use ``.apply``.

    ``apply(input, offset, mask, weight, bias=None, stride=1, padding=0,
    dilation=1, groups=1, deform_groups=1)``.
    """

    backend = "auto"

    @staticmethod
    def apply(input, offset, mask, weight, bias=None, stride=1, padding=0, dilation=1,
              groups=1, deform_groups=1):
        if input is not None and input.dim() != 4:
            raise ValueError(
                "Expected 4D tensor as input, got %dD tensor instead." % input.dim())
        _output_size(input, weight, stride, padding, dilation)
        return ops.modulated_deform_conv2d(input, offset, mask, weight, bias, stride, padding,
                                           dilation, groups, deform_groups,
                                           backend=ModulatedDeformConv2dFunction.backend)


deform_conv2d = DeformConv2dFunction.apply
modulated_deform_conv2d = ModulatedDeformConv2dFunction.apply


class DeformConv2d(nn.Module):
    """Deformable convolution v1 (mmcv ``DeformConv2d``): ``forward(x, offset)``.

    The offset has ``deform_groups * 2 * kh * kw`` channels laid out as
    ``[y0, x0, y1, x1, ...]`` per deform group.  No bias (mmcv's has none).
    """

    @_renamed_kwarg("deformable_groups", "deform_groups", "DeformConv2d")
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, deform_groups=1, bias=False, im2col_step=32):
        super(DeformConv2d, self).__init__()
        assert not bias, "bias=%s is not supported in DeformConv2d." % (bias,)
        assert in_channels % groups == 0, \
            "in_channels %s cannot be divisible by groups %s" % (in_channels, groups)
        assert out_channels % groups == 0, \
            "out_channels %s cannot be divisible by groups %s" % (out_channels, groups)
        _conv_attributes(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         deform_groups)
        self.im2col_step = im2col_step
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels // self.groups, *self.kernel_size))
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.kaiming_uniform_(self.weight, nonlinearity="relu")

    def forward(self, x, offset):
        # inputs smaller than the kernel are padded right/bottom and the output cropped
        input_pad = x.size(2) < self.kernel_size[0] or x.size(3) < self.kernel_size[1]
        if input_pad:
            pad_h = max(self.kernel_size[0] - x.size(2), 0)
            pad_w = max(self.kernel_size[1] - x.size(3), 0)
            x = F.pad(x, (0, pad_w, 0, pad_h), "constant", 0).contiguous()
            offset = F.pad(offset, (0, pad_w, 0, pad_h), "constant", 0).contiguous()
        out = deform_conv2d(x, offset, self.weight, self.stride, self.padding, self.dilation,
                            self.groups, self.deform_groups, False, self.im2col_step)
        if input_pad:
            out = out[:, :, :out.size(2) - pad_h, :out.size(3) - pad_w].contiguous()
        return out

    def __repr__(self):
        return ("%s(in_channels=%s,\nout_channels=%s,\nkernel_size=%s,\nstride=%s,\n"
                "padding=%s,\ndilation=%s,\ngroups=%s,\ndeform_groups=%s,\nbias=False)" % (
                    self.__class__.__name__, self.in_channels, self.out_channels,
                    self.kernel_size, self.stride, self.padding, self.dilation, self.groups,
                    self.deform_groups))


def _migrate_offset_keys(state_dict, prefix, local_metadata, what):
    """Checkpoints before version 2 stored ``<name>_offset.*`` beside ``<name>.*``."""
    version = local_metadata.get("version", None)
    if version is None or version < 2:
        for suffix in ("weight", "bias"):
            new_key = prefix + "conv_offset." + suffix
            old_key = prefix[:-1] + "_offset." + suffix
            if new_key not in state_dict and old_key in state_dict:
                state_dict[new_key] = state_dict.pop(old_key)
    if version is not None and version > 1:
        logger.info("%s %s is upgraded to version 2.", what, prefix.rstrip("."))


class DeformConv2dPack(DeformConv2d):
    """DeformConv2d whose offsets come from its own ``conv_offset`` (mmcv ``'DCN'``)."""

    _version = 2

    def __init__(self, *args, **kwargs):
        super(DeformConv2dPack, self).__init__(*args, **kwargs)
        self.conv_offset = nn.Conv2d(
            self.in_channels,
            self.deform_groups * 2 * self.kernel_size[0] * self.kernel_size[1],
            kernel_size=self.kernel_size,
            stride=_pair(self.stride),
            padding=_pair(self.padding),
            dilation=_pair(self.dilation),
            bias=True)
        self.init_offset()

    def init_offset(self):
        self.conv_offset.weight.data.zero_()
        self.conv_offset.bias.data.zero_()

    def forward(self, x):
        offset = self.conv_offset(x)
        return deform_conv2d(x, offset, self.weight, self.stride, self.padding, self.dilation,
                             self.groups, self.deform_groups, False, self.im2col_step)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        _migrate_offset_keys(state_dict, prefix, local_metadata, "DeformConv2dPack")
        super(DeformConv2dPack, self)._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
            error_msgs)


class ModulatedDeformConv2d(nn.Module):
    """Modulated deformable convolution (DCNv2; mmcv ``ModulatedDeformConv2d``).

    ``forward(x, offset, mask)``; ``bias`` defaults to True.
    """

    @_renamed_kwarg("deformable_groups", "deform_groups", "ModulatedDeformConv2d")
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, deform_groups=1, bias=True):
        super(ModulatedDeformConv2d, self).__init__()
        _conv_attributes(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         deform_groups)
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels))
        else:
            self.register_parameter("bias", None)
        self.init_weights()

    def init_weights(self):
        n = self.in_channels
        for k in self.kernel_size:
            n *= k
        stdv = 1.0 / math.sqrt(n)
        self.weight.data.uniform_(-stdv, stdv)
        if self.bias is not None:
            self.bias.data.zero_()

    def forward(self, x, offset, mask):
        return modulated_deform_conv2d(x, offset, mask, self.weight, self.bias, self.stride,
                                       self.padding, self.dilation, self.groups,
                                       self.deform_groups)


class ModulatedDeformConv2dPack(ModulatedDeformConv2d):
    """ModulatedDeformConv2d with its own ``conv_offset`` (mmcv ``'DCNv2'``).

    ``conv_offset`` outputs ``3 * deform_groups * kh * kw`` channels: the first
    two thirds are the offsets, the last third the mask logits (sigmoid).
    """

    _version = 2

    def __init__(self, *args, **kwargs):
        super(ModulatedDeformConv2dPack, self).__init__(*args, **kwargs)
        self.conv_offset = nn.Conv2d(
            self.in_channels,
            self.deform_groups * 3 * self.kernel_size[0] * self.kernel_size[1],
            kernel_size=self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            bias=True)
        self.init_weights()

    def init_weights(self):
        super(ModulatedDeformConv2dPack, self).init_weights()
        if hasattr(self, "conv_offset"):
            self.conv_offset.weight.data.zero_()
            self.conv_offset.bias.data.zero_()

    def forward(self, x):
        out = self.conv_offset(x)
        o1, o2, mask = torch.chunk(out, 3, dim=1)
        offset = torch.cat((o1, o2), dim=1)
        mask = torch.sigmoid(mask)
        return modulated_deform_conv2d(x, offset, mask, self.weight, self.bias, self.stride,
                                       self.padding, self.dilation, self.groups,
                                       self.deform_groups)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        _migrate_offset_keys(state_dict, prefix, local_metadata, "ModulatedDeformConvPack")
        super(ModulatedDeformConv2dPack, self)._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
            error_msgs)
