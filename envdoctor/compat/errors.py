"""Errors and the served-ops summary shared by the compat modules (stdlib only: hook.py uses it)."""

# what the stand-in serves, for the messages of the hook and of the ops it does not serve
SERVED_SUMMARY = ("deformable convolution (v1, v2), nms, softnms, nms_match, roi_align, "
                  "sigmoid_focal_loss, ms_deform_attn, box_iou_rotated, nms_rotated, "
                  "roi_align_rotated, psamask, masked_im2col/col2im, fused_bias_leakyrelu, "
                  "upfirdn2d, bias_act, filtered_lrelu, MMSyncBN (sync_bn_*)")


class CompatUnsupportedError(RuntimeError):
    """A case the requested backend cannot compute exactly."""
