"""A stand-in for ``mmcv._ext`` (mmcv's compiled extension module).

It provides mmcv's kernel entry points for deformable convolution (here), NMS
(:mod:`.nms`), RoIAlign (:mod:`.roi_align`) and the sigmoid focal loss
(:mod:`.focal_loss`) with the signatures of mmcv's own pybind11 bindings (mmcv
1.x and 2.x use the same ones), so mmcv's unmodified Python classes
(``mmcv.ops.DeformConv2d``, ``ModulatedDeformConv2dPack``, ``nms``, ``RoIAlign``,
...) run on it; ``IMPLEMENTED`` lists what is served.  Like the real kernels
the deformable-convolution ones write into caller-allocated tensors and return None:

* ``deform_conv_forward`` -> ``output``; ``deform_conv_backward_input`` ->
  ``gradInput`` (accumulated) and ``gradOffset`` (overwritten);
  ``deform_conv_backward_parameters`` -> ``gradWeight += scale * dW``;
* ``modulated_deform_conv_forward`` -> ``output``;
  ``modulated_deform_conv_backward`` -> ``grad_input``, ``grad_weight``,
  ``grad_bias`` (accumulated), ``grad_offset``, ``grad_mask`` (overwritten).

The ``columns`` / ``ones`` scratch buffers are accepted and left untouched
(mmcv's C++ code never writes them back either).

Every other name mmcv asks for with ``ext_loader.load_ext('_ext', [...])``
exists -- mmcv checks them with ``hasattr`` when ``mmcv.ops`` is imported --
but raises :class:`CompatOpUnavailableError` when called, naming the op and
how to get a real build.
"""

from . import ops
from .errors import SERVED_SUMMARY
from .bias_act import bias_act
from .filtered_lrelu import filtered_lrelu, filtered_lrelu_act_
from .focal_loss import sigmoid_focal_loss_backward, sigmoid_focal_loss_forward
from .fused_bias_act import fused_bias_leakyrelu
from .half import via_float32
from .masked_conv import masked_col2im_forward, masked_im2col_forward
from .ms_deform_attn import ms_deform_attn_backward, ms_deform_attn_forward
from .nms import nms, nms_match, softnms
from .psamask import psamask_backward, psamask_forward
from .roi_align import roi_align_backward, roi_align_forward
from .roi_align_rotated import roi_align_rotated_backward, roi_align_rotated_forward
from .rotated import box_iou_rotated, nms_rotated
from .sync_bn import (sync_bn_backward_data, sync_bn_backward_param, sync_bn_forward_mean,
                      sync_bn_forward_output, sync_bn_forward_var)
from .upfirdn2d import upfirdn2d

# mmcv's CUDA kernels of these take float16 (computed here in float32, rounded once)
roi_align_forward = via_float32(roi_align_forward, ("output", "argmax_y", "argmax_x"))
roi_align_backward = via_float32(roi_align_backward, ("grad_input",))
roi_align_rotated_forward = via_float32(roi_align_rotated_forward, ("output",))
# the binding's third positional parameter (named grad_output) is the one written
roi_align_rotated_backward = via_float32(roi_align_rotated_backward, ("grad_output",))
ms_deform_attn_forward = via_float32(ms_deform_attn_forward)
ms_deform_attn_backward = via_float32(ms_deform_attn_backward, (
    "grad_value", "grad_sampling_loc", "grad_attn_weight"))

__all__ = [
    "CompatOpUnavailableError",
    "MMCV_EXT_NAMES",
    "IMPLEMENTED",
    "deform_conv_forward",
    "deform_conv_backward_input",
    "deform_conv_backward_parameters",
    "modulated_deform_conv_forward",
    "modulated_deform_conv_backward",
    "nms",
    "softnms",
    "nms_match",
    "roi_align_forward",
    "roi_align_backward",
    "sigmoid_focal_loss_forward",
    "sigmoid_focal_loss_backward",
    "ms_deform_attn_forward",
    "ms_deform_attn_backward",
    "box_iou_rotated",
    "nms_rotated",
    "roi_align_rotated_forward",
    "roi_align_rotated_backward",
    "psamask_forward",
    "psamask_backward",
    "masked_im2col_forward",
    "masked_col2im_forward",
    "fused_bias_leakyrelu",
    "upfirdn2d",
    "bias_act",
    "filtered_lrelu",
    "filtered_lrelu_act_",
    "sync_bn_forward_mean",
    "sync_bn_forward_var",
    "sync_bn_forward_output",
    "sync_bn_backward_param",
    "sync_bn_backward_data",
    "get_compiler_version",
    "get_compiling_cuda_version",
]

__envdoctor_compat__ = True

# Every name that mmcv 1.7.2 (sdist mmcv-1.7.2.tar.gz) and mmcv-lite 2.2.0
# (wheel mmcv_lite-2.2.0-py2.py3-none-any.whl) request from '_ext' through
# ``ext_loader.load_ext('_ext', [...])``, collected with an AST scan of the
# literal lists in their ``mmcv/**/*.py`` files (107 names in 1.7.2, 112 in
# 2.2.0; 2.2.0 adds bezier_align_*, bias_act, filtered_lrelu*).  Also checked:
# no ``ext_module.<name>`` attribute access outside these lists.
MMCV_EXT_NAMES = (
    'active_rotated_filter_backward', 'active_rotated_filter_forward',
    'assign_score_withk_backward', 'assign_score_withk_forward', 'ball_query_forward',
    'bbox_overlaps', 'bezier_align_backward', 'bezier_align_forward', 'bias_act',
    'border_align_backward', 'border_align_forward', 'box_iou_quadri', 'box_iou_rotated',
    'carafe_backward', 'carafe_forward', 'carafe_naive_backward', 'carafe_naive_forward',
    'chamfer_distance_backward', 'chamfer_distance_forward', 'contour_expand',
    'convex_giou', 'convex_iou', 'correlation_backward', 'correlation_forward',
    'deform_conv_backward_input', 'deform_conv_backward_parameters', 'deform_conv_forward',
    'deform_roi_pool_backward', 'deform_roi_pool_forward',
    'diff_iou_rotated_sort_vertices_forward', 'dynamic_point_to_voxel_backward',
    'dynamic_point_to_voxel_forward', 'dynamic_voxelize_forward', 'filtered_lrelu',
    'filtered_lrelu_act_', 'furthest_point_sampling_forward',
    'furthest_point_sampling_with_dist_forward', 'fused_bias_leakyrelu',
    'fused_indice_conv_forward', 'gather_points_backward', 'gather_points_forward',
    'get_compiler_version', 'get_compiling_cuda_version', 'get_indice_pairs_2d_backward',
    'get_indice_pairs_2d_forward', 'get_indice_pairs_3d_backward',
    'get_indice_pairs_3d_forward', 'get_indice_pairs_4d_forward', 'group_points_backward',
    'group_points_forward', 'hard_voxelize_forward', 'indice_conv_backward',
    'indice_conv_forward', 'indice_maxpool_backward', 'indice_maxpool_forward',
    'iou3d_boxes_overlap_bev_forward', 'iou3d_nms3d_forward', 'iou3d_nms3d_normal_forward',
    'knn_forward', 'masked_col2im_forward', 'masked_im2col_forward', 'min_area_polygons',
    'modulated_deform_conv_backward', 'modulated_deform_conv_forward',
    'ms_deform_attn_backward', 'ms_deform_attn_forward', 'nms', 'nms_match', 'nms_quadri',
    'nms_rotated', 'pixel_group', 'points_in_boxes_all_forward',
    'points_in_boxes_cpu_forward', 'points_in_boxes_part_forward',
    'points_in_polygons_forward', 'prroi_pool_backward', 'prroi_pool_coor_backward',
    'prroi_pool_forward', 'psamask_backward', 'psamask_forward',
    'riroi_align_rotated_backward', 'riroi_align_rotated_forward', 'roi_align_backward',
    'roi_align_forward', 'roi_align_rotated_backward', 'roi_align_rotated_forward',
    'roi_pool_backward', 'roi_pool_forward', 'roiaware_pool3d_backward',
    'roiaware_pool3d_forward', 'roipoint_pool3d_forward', 'rotated_feature_align_backward',
    'rotated_feature_align_forward', 'sigmoid_focal_loss_backward',
    'sigmoid_focal_loss_forward', 'softmax_focal_loss_backward',
    'softmax_focal_loss_forward', 'softnms', 'stack_ball_query_forward',
    'stack_group_points_backward', 'stack_group_points_forward', 'sync_bn_backward_data',
    'sync_bn_backward_param', 'sync_bn_forward_mean', 'sync_bn_forward_output',
    'sync_bn_forward_var', 'three_interpolate_backward', 'three_interpolate_forward',
    'three_nn_forward', 'tin_shift_backward', 'tin_shift_forward', 'upfirdn2d',
)

# the kernels served (every export but the three non-kernel names); every other name in
# MMCV_EXT_NAMES raises CompatOpUnavailableError
IMPLEMENTED = tuple(n for n in __all__ if n not in ("CompatOpUnavailableError", "MMCV_EXT_NAMES", "IMPLEMENTED"))


class CompatOpUnavailableError(NotImplementedError):
    """An mmcv compiled op that the compat layer does not provide."""


def _unavailable(name):
    def op(*args, **kwargs):
        raise CompatOpUnavailableError(
            "mmcv._ext.%s is not available: mmcv's compiled extension could not be loaded and "
            "envdoctor's compat layer only provides %s. To use %s, install an mmcv build with "
            "compiled ops that matches this torch/CUDA/Python: run `envdoctor check` to see why "
            "the real mmcv._ext does not load and `envdoctor fix --apply --strategy wheel` to "
            "install a matching wheel (or build mmcv from source with its ops)."
            % (name, SERVED_SUMMARY, name))

    op.__name__ = name
    op.__qualname__ = name
    op.__doc__ = "Not provided by the envdoctor compat layer; raises CompatOpUnavailableError."
    return op


def __getattr__(name):
    # ops added by mmcv versions newer than the list above also exist (hasattr is true) and
    # raise the same explanation when called
    if name.startswith("_"):
        raise AttributeError(name)
    return _unavailable(name)


def get_compiler_version():
    return "envdoctor-compat (pure PyTorch, no compiled mmcv ops)"


def get_compiling_cuda_version():
    return "not available (envdoctor-compat)"


# ---------------------------------------------------------------------------
# deformable convolution v1
# ---------------------------------------------------------------------------


def _check_dcn_v1(input, weight, offset, kW, kH, dW, dH, padW, padH, dilationW, dilationH,
                  group, deformable_group, im2col_step):
    if weight.dim() != 4:
        raise RuntimeError("deform_conv: 4D weight tensor (nOutputPlane,nInputPlane,kH,kW) "
                           "expected, but got: %dD" % weight.dim())
    if kW <= 0 or kH <= 0 or dW <= 0 or dH <= 0 or dilationW <= 0 or dilationH <= 0:
        raise RuntimeError("deform_conv: kernel size, stride and dilation must be > 0")
    if weight.size(2) != kH or weight.size(3) != kW:
        raise RuntimeError("deform_conv: kernel size should match weight: kH=%d kW=%d, weight "
                           "%s" % (kH, kW, tuple(weight.shape)))
    if input.dim() != 4:
        raise RuntimeError("deform_conv: 4D input expected, got %dD" % input.dim())
    if input.size(1) % deformable_group != 0:
        raise RuntimeError("deform_conv: input channels %d not divisible by deformable_group %d"
                           % (input.size(1), deformable_group))
    if input.size(1) != weight.size(1) * group:
        raise RuntimeError("deform_conv: input has %d channels, weight expects %d x group %d"
                           % (input.size(1), weight.size(1), group))
    if input.size(2) < kH or input.size(3) < kW:
        raise RuntimeError("deform_conv: input image is smaller than kernel: input %dx%d, "
                           "kernel %dx%d" % (input.size(2), input.size(3), kH, kW))
    if offset.size(0) != input.size(0):
        raise RuntimeError("deform_conv: invalid batch size of offset")
    step = min(im2col_step, input.size(0))
    if input.size(0) > 0 and (step <= 0 or input.size(0) % step != 0):
        raise RuntimeError("deform_conv: batch size %d must be divisible by im2col_step %d"
                           % (input.size(0), step))


def _store(dst, value, accumulate, alpha=1):
    if value is None:
        return
    if dst.numel() == 0 and value.numel() != 0:
        dst.resize_(value.shape).zero_()
    value = value.reshape(dst.shape).to(dst.dtype)
    if accumulate:
        dst.add_(value, alpha=alpha)
    else:
        dst.copy_(value)


def deform_conv_forward(input, weight, offset, output, columns, ones, kW, kH, dW, dH, padW, padH,
                        dilationW, dilationH, group, deformable_group, im2col_step):
    _check_dcn_v1(input, weight, offset, kW, kH, dW, dH, padW, padH, dilationW, dilationH,
                  group, deformable_group, im2col_step)
    out = ops.forward_nograd(input, offset, None, weight, None, (dH, dW), (padH, padW),
                             (dilationH, dilationW), group, deformable_group)
    if tuple(output.shape) != tuple(out.shape):
        output.resize_(out.shape)
    output.copy_(out)


def deform_conv_backward_input(input, offset, gradOutput, gradInput, gradOffset, weight, columns,
                               kW, kH, dW, dH, padW, padH, dilationW, dilationH, group,
                               deformable_group, im2col_step):
    _check_dcn_v1(input, weight, offset, kW, kH, dW, dH, padW, padH, dilationW, dilationH,
                  group, deformable_group, im2col_step)
    gi, go, _, _, _ = ops.backward(input, offset, None, weight, False, gradOutput, (dH, dW),
                                   (padH, padW), (dilationH, dilationW), group, deformable_group,
                                   needs=(True, True, False, False, False))
    _store(gradInput, gi, accumulate=True)
    _store(gradOffset, go, accumulate=False)


def deform_conv_backward_parameters(input, offset, gradOutput, gradWeight, columns, ones, kW, kH,
                                    dW, dH, padW, padH, dilationW, dilationH, group,
                                    deformable_group, scale, im2col_step):
    _check_dcn_v1(input, gradWeight, offset, kW, kH, dW, dH, padW, padH, dilationW, dilationH,
                  group, deformable_group, im2col_step)
    # only the weight's shape matters for its own gradient
    weight = gradWeight.new_zeros(gradWeight.shape)
    _, _, _, gw, _ = ops.backward(input, offset, None, weight, False, gradOutput, (dH, dW),
                                  (padH, padW), (dilationH, dilationW), group, deformable_group,
                                  needs=(False, False, False, True, False))
    _store(gradWeight, gw, accumulate=True, alpha=scale)


# ---------------------------------------------------------------------------
# modulated deformable convolution (DCNv2)
# ---------------------------------------------------------------------------


def _check_dcn_v2(input, weight, kernel_h, kernel_w, group):
    if weight.dim() != 4 or input.dim() != 4:
        raise RuntimeError("modulated_deform_conv: 4D input and weight expected")
    if weight.size(2) != kernel_h or weight.size(3) != kernel_w:
        raise RuntimeError("Input shape and kernel shape won't match: (%d x %d vs %d x %d)."
                           % (kernel_h, kernel_w, weight.size(2), weight.size(3)))
    if input.size(1) != weight.size(1) * group:
        raise RuntimeError("Input shape and kernel channels won't match: (%d vs %d)."
                           % (input.size(1), weight.size(1) * group))


def modulated_deform_conv_forward(input, weight, bias, ones, offset, mask, output, columns,
                                  kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                                  dilation_h, dilation_w, group, deformable_group, with_bias):
    _check_dcn_v2(input, weight, kernel_h, kernel_w, group)
    out = ops.forward_nograd(input, offset, mask, weight, bias if with_bias else None,
                             (stride_h, stride_w), (pad_h, pad_w), (dilation_h, dilation_w),
                             group, deformable_group)
    if tuple(output.shape) != tuple(out.shape):
        output.resize_(out.shape)
    output.copy_(out)


def modulated_deform_conv_backward(input, weight, bias, ones, offset, mask, columns, grad_input,
                                   grad_weight, grad_bias, grad_offset, grad_mask, grad_output,
                                   kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                                   dilation_h, dilation_w, group, deformable_group, with_bias):
    _check_dcn_v2(input, weight, kernel_h, kernel_w, group)
    gi, go, gm, gw, gb = ops.backward(
        input, offset, mask, weight, bool(with_bias), grad_output, (stride_h, stride_w),
        (pad_h, pad_w), (dilation_h, dilation_w), group, deformable_group,
        needs=(True, True, True, True, bool(with_bias)))
    _store(grad_input, gi, accumulate=True)
    _store(grad_weight, gw, accumulate=True)
    if with_bias:
        _store(grad_bias, gb, accumulate=True)
    _store(grad_offset, go, accumulate=False)
    _store(grad_mask, gm, accumulate=False)


for _name in MMCV_EXT_NAMES:
    if _name not in globals():
        globals()[_name] = _unavailable(_name)
del _name
