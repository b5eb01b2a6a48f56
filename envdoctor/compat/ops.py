"""Exact deformable convolution (DCNv1 and modulated DCNv2) with mmcv's semantics.

Two backends compute the same numbers:

``"torch"``
    Pure PyTorch, always available, any device and floating dtype.  Every sample
    position ``p0 + pk + dpk`` is split into its four integer corners once
    (``floor`` of the exact coordinate), the corners are read with one
    ``index_select`` from a zero-padded, channels-last copy of the input, and the
    bilinear weights carry the validity window ``-1 < y < H``, ``-1 < x < W``.
    The backward pass is written by hand (no autograd through the sampling) and
    follows mmcv's kernels rule for rule, including the cut that makes the
    offset gradient zero for a sample lying exactly on ``y == -1`` or
    ``x == -1``.  The work is done in chunks of output positions so the
    temporary "columns" never exceed a few tens of megabytes.

``"torchvision"``
    torchvision's compiled ``deform_conv2d`` kernel (CPU and CUDA) when its
    compiled operator loads.  Its forward and its input/mask/weight/bias
    gradients are mmcv's; its offset gradient differs at exactly ``-1``
    (pytorch/vision#6885), so the offset goes through an identity autograd
    Function whose backward zeroes the gradient of samples outside mmcv's window.

``"auto"``
    The fastest exact backend for the call (see :func:`select_backend`): the
    torch backend on CPU, torchvision's kernel on CUDA when it loads.

Nothing here silently degrades: a case a backend cannot do raises
:class:`CompatUnsupportedError` naming the case.

This module imports only the standard library and torch (torchvision lazily).
"""

import os

import torch
from torch.autograd import Function
from torch.autograd.function import once_differentiable

__all__ = [
    "CompatUnsupportedError",
    "BACKENDS",
    "deform_conv2d",
    "modulated_deform_conv2d",
    "torchvision_available",
    "select_backend",
    "output_size",
    "forward_nograd",
    "backward",
]

BACKENDS = ("auto", "torch", "torchvision")

_FLOAT_DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)

# Upper bound of the per-chunk working set of the torch backend (bytes).  The
# four gathered corners of one chunk are ``4 * rows * C * K`` elements.
_CHUNK_BYTES = int(os.environ.get("ENVDOCTOR_COMPAT_CHUNK_BYTES", 12 << 20))


class CompatUnsupportedError(RuntimeError):
    """A case the requested backend cannot compute exactly."""


def _pair(v, name):
    if isinstance(v, (list, tuple)):
        if len(v) != 2:
            raise ValueError("%s must be an int or a pair of ints, got %r" % (name, v))
        return int(v[0]), int(v[1])
    return int(v), int(v)


def output_size(in_hw, kernel_hw, stride, padding, dilation):
    """Output (height, width) of a convolution, as mmcv computes it."""
    out = []
    for d in range(2):
        k_eff = dilation[d] * (kernel_hw[d] - 1) + 1
        out.append((in_hw[d] + 2 * padding[d] - k_eff) // stride[d] + 1)
    return tuple(out)


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------


def _check(input, offset, mask, weight, bias, stride, padding, dilation, groups, deform_groups):
    if input.dim() != 4:
        raise ValueError(
            "Expected 4D tensor as input, got %dD tensor instead." % input.dim())
    if weight.dim() != 4:
        raise ValueError("Expected 4D weight (out, in/groups, kh, kw), got %dD" % weight.dim())
    if input.dtype not in _FLOAT_DTYPES:
        raise CompatUnsupportedError(
            "deformable convolution: dtype %s is not supported (float64, float32, "
            "float16 and bfloat16 are)" % (input.dtype,))
    for name, t in (("offset", offset), ("weight", weight), ("mask", mask), ("bias", bias)):
        if t is None:
            continue
        if t.dtype != input.dtype:
            raise ValueError("%s has dtype %s but input has %s" % (name, t.dtype, input.dtype))
        if t.device != input.device:
            raise ValueError("%s is on %s but input is on %s" % (name, t.device, input.device))
    if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
        raise ValueError(
            "stride and dilation must be >= 1 and padding >= 0, got stride=%r padding=%r "
            "dilation=%r" % (stride, padding, dilation))
    B, C, H, W = input.shape
    Cout, Cg, kh, kw = weight.shape
    groups = int(groups)
    deform_groups = int(deform_groups)
    if groups < 1 or deform_groups < 1:
        raise ValueError("groups and deform_groups must be >= 1")
    if Cg * groups != C:
        raise ValueError(
            "input has %d channels but weight expects %d (weight.size(1)=%d x groups=%d)"
            % (C, Cg * groups, Cg, groups))
    if Cout % groups != 0:
        raise ValueError("out_channels %d is not divisible by groups %d" % (Cout, groups))
    if C % deform_groups != 0:
        raise ValueError(
            "input channels %d are not divisible by deform_groups %d" % (C, deform_groups))
    Ho, Wo = output_size((H, W), (kh, kw), stride, padding, dilation)
    if Ho <= 0 or Wo <= 0:
        raise ValueError(
            "convolution input is too small (output would be %s)"
            % "x".join(str(s) for s in (B, Cout, Ho, Wo)))
    K = kh * kw
    if offset.dim() != 4 or tuple(offset.shape) != (B, deform_groups * 2 * K, Ho, Wo):
        raise ValueError(
            "offset must have shape %s = (batch, deform_groups*2*kh*kw, out_h, out_w), got %s"
            % ((B, deform_groups * 2 * K, Ho, Wo), tuple(offset.shape)))
    if mask is not None and (mask.dim() != 4 or tuple(mask.shape) != (B, deform_groups * K, Ho, Wo)):
        raise ValueError(
            "mask must have shape %s = (batch, deform_groups*kh*kw, out_h, out_w), got %s"
            % ((B, deform_groups * K, Ho, Wo), tuple(mask.shape)))
    if bias is not None and tuple(bias.shape) != (Cout,):
        raise ValueError("bias must have shape (%d,), got %s" % (Cout, tuple(bias.shape)))
    return Ho, Wo


# ---------------------------------------------------------------------------
# torch backend
# ---------------------------------------------------------------------------


class _Geometry(object):
    """Shapes and index helpers shared by forward and backward of the torch backend."""

    def __init__(self, input, weight, stride, padding, dilation, groups, deform_groups, Ho, Wo):
        self.B, self.C, self.H, self.W = input.shape
        self.Cout, self.Cgr, self.kh, self.kw = weight.shape
        self.K = self.kh * self.kw
        self.G = groups
        self.dg = deform_groups
        self.Cg = self.C // deform_groups
        self.Cog = self.Cout // groups
        self.Ho, self.Wo = Ho, Wo
        self.L = Ho * Wo
        self.N = self.B * self.L
        self.Hp, self.Wp = self.H + 2, self.W + 2
        self.P = self.Hp * self.Wp
        self.R = self.C * self.K
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.device = input.device
        self.dtype = input.dtype
        elt = input.element_size()
        self.rows = max(1, min(self.N, _CHUNK_BYTES // max(1, 4 * self.R * elt)))
        dev = input.device
        # integer base coordinates of every (output position, kernel tap); exact in every dtype
        oh = torch.arange(Ho, device=dev).mul_(stride[0]).sub_(padding[0])
        ow = torch.arange(Wo, device=dev).mul_(stride[1]).sub_(padding[1])
        ki = torch.arange(self.kh, device=dev).mul_(dilation[0])
        kj = torch.arange(self.kw, device=dev).mul_(dilation[1])
        by = (oh[:, None, None, None] + ki[None, None, :, None]).expand(Ho, Wo, self.kh, self.kw)
        bx = (ow[None, :, None, None] + kj[None, None, None, :]).expand(Ho, Wo, self.kh, self.kw)
        # [L, 1, K] so it broadcasts against [rows, dg, K]; half types: the sum base + offset
        # is formed in float32 and rounded once (large integers are not exact in fp16/bf16)
        self.coord_dtype = _acc_dtype(self.dtype)
        self.base_y = by.reshape(self.L, 1, self.K).to(self.coord_dtype)
        self.base_x = bx.reshape(self.L, 1, self.K).to(self.coord_dtype)
        self.corner = torch.tensor([0, 1, self.Wp, self.Wp + 1], device=dev).view(4, 1, 1, 1)

    def chunks(self, scale=1):
        step = max(1, self.rows * scale)
        for n0 in range(0, self.N, step):
            yield n0, min(self.N, n0 + step)

    def weight_cols(self, weight):
        """weight [Cout, Cgr, kh, kw] -> [G, Cog, R/G] in the order of the gathered columns."""
        if self.G == 1:
            # columns are ordered (deform group, tap, channel in deform group)
            return weight.reshape(1, self.Cout, self.dg, self.Cg, self.K).transpose(3, 4).reshape(
                1, self.Cout, self.R)
        # columns per conv group ordered (tap, channel in conv group)
        return weight.reshape(self.G, self.Cog, self.Cgr, self.K).transpose(2, 3).reshape(
            self.G, self.Cog, self.K * self.Cgr)

    def weight_from_cols(self, wc):
        if self.G == 1:
            return wc.reshape(self.Cout, self.dg, self.K, self.Cg).transpose(2, 3).reshape(
                self.Cout, self.Cgr, self.kh, self.kw)
        return wc.reshape(self.G, self.Cog, self.K, self.Cgr).transpose(2, 3).reshape(
            self.Cout, self.Cgr, self.kh, self.kw)

    def to_cols(self, V):
        """sampled values [rows, dg, K, Cg] -> [G, rows, R/G]."""
        n = V.shape[0]
        if self.G == 1:
            return V.reshape(1, n, self.R)
        V = V.permute(0, 2, 1, 3).reshape(n, self.K, self.G, self.Cgr)
        return V.permute(2, 0, 1, 3).reshape(self.G, n, self.K * self.Cgr)

    def from_cols(self, cols):
        """[G, rows, R/G] -> [rows, dg, K, Cg] (contiguous)."""
        n = cols.shape[1]
        if self.G == 1:
            return cols.reshape(n, self.dg, self.K, self.Cg)
        V = cols.reshape(self.G, n, self.K, self.Cgr).permute(1, 2, 0, 3).reshape(
            n, self.K, self.dg, self.Cg)
        return V.permute(0, 2, 1, 3).contiguous()

    def precompute(self, off_t, mask_t):
        """Corner-0 index, fractional parts and multiplier of every sample, computed once.

        A sample (row n = b*L + l, deform group g, tap k) lies at
        ``y = base_y + dy``, ``x = base_x + dx`` (one rounding, like the kernels).  It
        contributes only if ``-1 < y < H`` and ``-1 < x < W``; then its corners are
        ``floor(y) + {0, 1}`` x ``floor(x) + {0, 1}``, read from the zero-padded input, so
        corners outside the image read 0.  Invalid samples get weight 0 and a harmless index.
        """
        B, L, dg, K = self.B, self.L, self.dg, self.K
        off = off_t.view(B, L, dg, K, 2)
        y = (self.base_y.view(1, L, 1, K) + off[..., 0]).to(self.dtype)
        x = (self.base_x.view(1, L, 1, K) + off[..., 1]).to(self.dtype)
        valid = (y > -1) & (y < self.H) & (x > -1) & (x < self.W)
        zero = torch.zeros((), dtype=y.dtype, device=self.device)
        y = torch.where(valid, y, zero)
        x = torch.where(valid, x, zero)
        y0 = torch.floor(y)
        x0 = torch.floor(x)
        self.ly = (y - y0).view(self.N, dg, K)
        self.lx = (x - x0).view(self.N, dg, K)
        del y, x
        plane = (torch.arange(B, device=self.device).view(B, 1, 1, 1) * dg
                 + torch.arange(dg, device=self.device).view(1, 1, dg, 1)) * self.P + self.Wp + 1
        idx0 = y0.to(torch.int64).mul_(self.Wp)
        idx0 += x0.to(torch.int64)
        idx0 += plane
        self.idx0 = idx0.view(self.N, dg, K)
        self.valid = valid.view(self.N, dg, K)
        m = valid.to(self.dtype).view(self.N, dg, K)
        if mask_t is not None:
            m = m * mask_t
        self.m = m
        # the four corner weights times validity and mask, [4, N, dg, K]
        hy = 1 - self.ly
        hx = 1 - self.lx
        self.wm = torch.stack((hy * hx, hy * self.lx, self.ly * hx, self.ly * self.lx)).mul_(m)

    def indices(self, n0, n1):
        """Padded-input row indices of the four corners of rows n0:n1, [4, rows, dg, K]."""
        return self.idx0[n0:n1].unsqueeze(0) + self.corner

    def sampled(self, xflat, n0, n1):
        """Corner values [4, rows, dg, K, Cg] and their weighted sum V [rows, dg, K, Cg].

        V = ((w1*v1 + w2*v2) + w3*v3) + w4*v4 with the weights already carrying
        validity and mask (mmcv sums in this order, then multiplies by the mask).
        """
        rows = n1 - n0
        vals = xflat.index_select(0, self.indices(n0, n1).reshape(-1)).view(
            4, rows, self.dg, self.K, self.Cg)
        w = self.wm[:, n0:n1].unsqueeze(-1)
        V = vals[0] * w[0]
        for i in (1, 2, 3):
            V.addcmul_(vals[i], w[i])
        return vals, V


def _prepare(input, offset, mask, g):
    """Layouts used by the torch backend."""
    # padded, channels-last per deform group: [(B*dg*P), Cg]
    xp = torch.nn.functional.pad(input, (1, 1, 1, 1))
    xflat = xp.reshape(g.B, g.dg, g.Cg, g.P).transpose(2, 3).reshape(g.B * g.dg * g.P, g.Cg)
    # offsets [N, dg, K, 2], mask [N, dg, K]
    off_t = offset.reshape(g.B, g.dg, g.K, 2, g.L).permute(0, 4, 1, 2, 3).reshape(g.N, g.dg, g.K, 2)
    mask_t = None
    if mask is not None:
        mask_t = mask.reshape(g.B, g.dg, g.K, g.L).permute(0, 3, 1, 2).reshape(g.N, g.dg, g.K)
    g.precompute(off_t, mask_t)
    return xflat


def _acc_dtype(dtype):
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _torch_forward(input, offset, mask, weight, bias, stride, padding, dilation, groups,
                   deform_groups, Ho, Wo):
    input = input.contiguous()
    offset = offset.contiguous()
    weight = weight.contiguous()
    if mask is not None:
        mask = mask.contiguous()
    g = _Geometry(input, weight, stride, padding, dilation, groups, deform_groups, Ho, Wo)
    xflat = _prepare(input, offset, mask, g)
    wcols = g.weight_cols(weight).transpose(1, 2)  # [G, R/G, Cog]
    out = input.new_empty((g.N, g.Cout))
    for n0, n1 in g.chunks():
        _, V = g.sampled(xflat, n0, n1)
        res = torch.bmm(g.to_cols(V), wcols)  # [G, rows, Cog]
        out[n0:n1] = res.transpose(0, 1).reshape(n1 - n0, g.Cout)
    out = out.view(g.B, g.L, g.Cout).transpose(1, 2).reshape(g.B, g.Cout, Ho, Wo)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


def _torch_backward(input, offset, mask, weight, has_bias, grad_out, stride, padding, dilation,
                    groups, deform_groups, Ho, Wo, needs):
    """Gradients (input, offset, mask, weight, bias) of the torch backend; None where not needed.

    Follows mmcv's kernels: col2im for the input, the interpolated value for
    the mask, col2im_coord (one-sided derivative, zero outside the open window)
    for the offset, columns x grad_output for the weight.
    """
    need_in, need_off, need_mask, need_w, need_b = needs
    input = input.contiguous()
    offset = offset.contiguous()
    weight = weight.contiguous()
    if mask is not None:
        mask = mask.contiguous()
    g = _Geometry(input, weight, stride, padding, dilation, groups, deform_groups, Ho, Wo)
    xflat = _prepare(input, offset, mask, g)
    acc = _acc_dtype(g.dtype)
    grad_out = grad_out.to(g.dtype)
    gflat = grad_out.reshape(g.B, g.Cout, g.L).transpose(1, 2).reshape(g.N, g.Cout)
    wcols = g.weight_cols(weight)  # [G, Cog, R/G]
    gx = torch.zeros_like(xflat, dtype=acc) if need_in else None
    goff = input.new_empty((g.N, g.dg, g.K, 2)) if need_off else None
    gmask = input.new_empty((g.N, g.dg, g.K)) if (need_mask and mask is not None) else None
    gw = torch.zeros(wcols.shape, dtype=acc, device=g.device) if need_w else None
    need_vals = need_off or need_w or gmask is not None
    for n0, n1 in g.chunks():
        rows = n1 - n0
        gc = gflat[n0:n1].reshape(rows, g.G, g.Cog).transpose(0, 1)  # [G, rows, Cog]
        gV = None
        if need_in or need_off or gmask is not None:
            gV = g.from_cols(torch.bmm(gc, wcols))  # grad of the columns, [rows, dg, K, Cg]
        if need_vals:
            vals, V = g.sampled(xflat, n0, n1)
        if need_w:
            gw += torch.bmm(gc.transpose(1, 2), g.to_cols(V)).to(acc)
        if need_in:
            # col2im: every corner receives weight * grad_column
            src = (gV.unsqueeze(0) * g.wm[:, n0:n1].unsqueeze(-1)).to(acc)
            gx.index_put_((g.indices(n0, n1).reshape(-1),), src.reshape(-1, g.Cg),
                          accumulate=True)
            del src
        if need_off or gmask is not None:
            # A[c] = sum over channels of grad_column * value of corner c
            A = (vals * gV.unsqueeze(0)).sum(-1)  # [4, rows, dg, K]
            ly, lx = g.ly[n0:n1], g.lx[n0:n1]
            hy, hx = 1 - ly, 1 - lx
            if gmask is not None:
                wsum = hy * (hx * A[0] + lx * A[1]) + ly * (hx * A[2] + lx * A[3])
                gmask[n0:n1] = wsum * g.valid[n0:n1].to(A.dtype)
            if need_off:
                m = g.m[n0:n1]
                # derivative of the bilinear weights with floor() held fixed; m carries the
                # validity window, so samples on exactly -1 (or H, W) get zero
                goff[n0:n1, ..., 0] = m * (hx * (A[2] - A[0]) + lx * (A[3] - A[1]))
                goff[n0:n1, ..., 1] = m * (hy * (A[1] - A[0]) + ly * (A[3] - A[2]))
    grad_input = grad_offset = grad_mask = grad_weight = grad_bias = None
    if need_in:
        grad_input = gx.to(g.dtype).view(g.B, g.dg, g.Hp, g.Wp, g.Cg)[:, :, 1:-1, 1:-1, :]
        grad_input = grad_input.permute(0, 1, 4, 2, 3).reshape(g.B, g.C, g.H, g.W)
    if need_off:
        grad_offset = goff.view(g.B, g.L, g.dg, g.K, 2).permute(0, 2, 3, 4, 1).reshape(
            g.B, g.dg * 2 * g.K, Ho, Wo)
    if gmask is not None:
        grad_mask = gmask.view(g.B, g.L, g.dg, g.K).permute(0, 2, 3, 1).reshape(
            g.B, g.dg * g.K, Ho, Wo)
    if need_w:
        grad_weight = g.weight_from_cols(gw).to(g.dtype)
    if need_b and has_bias:
        grad_bias = grad_out.sum((0, 2, 3), dtype=acc).to(g.dtype)
    return grad_input, grad_offset, grad_mask, grad_weight, grad_bias


class _DeformConvTorch(Function):
    @staticmethod
    def forward(ctx, input, offset, mask, weight, bias, stride, padding, dilation, groups,
                deform_groups, Ho, Wo):
        ctx.geom = (stride, padding, dilation, groups, deform_groups, Ho, Wo)
        ctx.has_bias = bias is not None
        ctx.save_for_backward(input, offset, mask, weight)
        return _torch_forward(input, offset, mask, weight, bias, stride, padding, dilation,
                              groups, deform_groups, Ho, Wo)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        input, offset, mask, weight = ctx.saved_tensors
        grads = _torch_backward(input, offset, mask, weight, ctx.has_bias, grad_out, *ctx.geom,
                                needs=ctx.needs_input_grad[:5])
        return grads + (None,) * 7


# ---------------------------------------------------------------------------
# torchvision backend
# ---------------------------------------------------------------------------

_TV_STATE: dict = {}


def torchvision_available():
    """(ok, reason): whether torchvision's compiled deform_conv2d operator can be called."""
    if "ok" not in _TV_STATE:
        ok, reason = False, ""
        try:
            import torchvision  # noqa: F401
            op = torch.ops.torchvision.deform_conv2d
            # resolving the overload packet raises if the compiled library did not load
            op.default  # noqa: B018
            ok = True
        except Exception as exc:  # ImportError, RuntimeError, AttributeError, OSError...
            reason = "%s: %s" % (type(exc).__name__, exc)
        _TV_STATE["ok"], _TV_STATE["reason"] = ok, reason
    return _TV_STATE["ok"], _TV_STATE["reason"]


def _valid_mask(offset, in_hw, kernel_hw, stride, padding, dilation, deform_groups):
    """valid[b, g, k, oh, ow] = (-1 < y < H) & (-1 < x < W), computed like the kernels do."""
    B, _, Ho, Wo = offset.shape
    kh, kw = kernel_hw
    K = kh * kw
    dev = offset.device
    off = offset.reshape(B, deform_groups, K, 2, Ho, Wo)
    oh = torch.arange(Ho, device=dev) * stride[0] - padding[0]
    ow = torch.arange(Wo, device=dev) * stride[1] - padding[1]
    ki = torch.arange(kh, device=dev) * dilation[0]
    kj = torch.arange(kw, device=dev) * dilation[1]
    by = (ki.view(kh, 1, 1, 1) + oh.view(1, 1, Ho, 1)).expand(kh, kw, Ho, 1).reshape(K, Ho, 1)
    bx = (kj.view(1, kw, 1, 1) + ow.view(1, 1, 1, Wo)).expand(kh, kw, 1, Wo).reshape(K, 1, Wo)
    y = by.to(offset.dtype) + off[:, :, :, 0]
    x = bx.to(offset.dtype) + off[:, :, :, 1]
    return (y > -1) & (y < in_hw[0]) & (x > -1) & (x < in_hw[1])


class _GateOffsetGrad(Function):
    """Identity on the offset; backward keeps only the samples inside mmcv's window."""

    @staticmethod
    def forward(ctx, offset, in_hw, kernel_hw, stride, padding, dilation, deform_groups):
        ctx.args = (in_hw, kernel_hw, stride, padding, dilation, deform_groups)
        ctx.save_for_backward(offset)
        return offset.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (offset,) = ctx.saved_tensors
        valid = _valid_mask(offset, *ctx.args)  # [B, dg, K, Ho, Wo]
        g = grad.reshape(valid.shape[0], valid.shape[1], valid.shape[2], 2, *valid.shape[3:])
        g = g * valid.unsqueeze(3).to(g.dtype)
        return g.reshape(grad.shape), None, None, None, None, None, None


def _tv_supports(device, dtype):
    key = ("dtype", device.type, dtype)
    if key not in _TV_STATE:
        ok = False
        try:
            x = torch.zeros((1, 1, 2, 2), dtype=dtype, device=device)
            w = torch.zeros((1, 1, 1, 1), dtype=dtype, device=device)
            o = torch.zeros((1, 2, 2, 2), dtype=dtype, device=device)
            msk = torch.zeros((1, 1, 2, 2), dtype=dtype, device=device)
            b = torch.zeros((1,), dtype=dtype, device=device)
            torch.ops.torchvision.deform_conv2d(x, w, o, msk, b, 1, 1, 0, 0, 1, 1, 1, 1, True)
            ok = True
        except Exception:
            ok = False
        _TV_STATE[key] = ok
    return _TV_STATE[key]


def _run_torchvision(input, offset, mask, weight, bias, stride, padding, dilation, groups,
                     deform_groups):
    ok, reason = torchvision_available()
    if not ok:
        raise CompatUnsupportedError(
            "backend 'torchvision': torchvision's compiled deform_conv2d operator is not "
            "available (%s)" % reason)
    if not _tv_supports(input.device, input.dtype):
        raise CompatUnsupportedError(
            "backend 'torchvision': torchvision's deform_conv2d kernel has no %s "
            "implementation for dtype %s; use backend='torch'" % (input.device.type, input.dtype))
    H, W = input.shape[2:]
    kh, kw = weight.shape[2:]
    if offset.requires_grad and torch.is_grad_enabled():
        offset = _GateOffsetGrad.apply(offset, (H, W), (kh, kw), stride, padding, dilation,
                                       deform_groups)
    use_mask = mask is not None
    if mask is None:
        mask = input.new_zeros((input.shape[0], 1))  # unused when use_mask is False
    if bias is None:
        bias = input.new_zeros((weight.shape[0],))
    return torch.ops.torchvision.deform_conv2d(
        input, weight, offset, mask, bias, stride[0], stride[1], padding[0], padding[1],
        dilation[0], dilation[1], groups, deform_groups, use_mask)


# ---------------------------------------------------------------------------
# backend selection and public functions
# ---------------------------------------------------------------------------


def _needs_grad(*tensors):
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def select_backend(input, backend="auto", needs_grad=False):
    """Resolve ``backend`` to "torch" or "torchvision" for a call on ``input``.

    ``auto``: on CUDA, torchvision's kernel when it loads and supports the dtype
    (a fused native kernel); on CPU and everywhere else the torch backend, which
    bench/bench_compat.py measures faster than torchvision's CPU kernel at the
    E2FGVI shape for forward (~0.4x) and forward+backward (~0.25x).  Both are
    exact, so the choice changes results only by float rounding.
    ``needs_grad`` is accepted for callers that know it; the current policy does
    not depend on it.  ``ENVDOCTOR_COMPAT_BACKEND=torch|torchvision`` overrides
    ``auto``.
    """
    if backend not in BACKENDS:
        raise ValueError("backend must be one of %s, got %r" % (BACKENDS, backend))
    if backend == "auto":
        env = os.environ.get("ENVDOCTOR_COMPAT_BACKEND", "").strip().lower()
        if env in ("torch", "torchvision"):
            return env
        if input.device.type != "cuda":
            return "torch"
        ok, _ = torchvision_available()
        if ok and _tv_supports(input.device, input.dtype):
            return "torchvision"
        return "torch"
    return backend


def _dispatch(input, offset, mask, weight, bias, stride, padding, dilation, groups,
              deform_groups, backend):
    stride, padding, dilation, groups, deform_groups = _normalize(
        stride, padding, dilation, groups, deform_groups)
    Ho, Wo = _check(input, offset, mask, weight, bias, stride, padding, dilation, groups,
                    deform_groups)
    if input.shape[0] == 0:
        out = input.new_zeros((0, weight.shape[0], Ho, Wo))
        # keep the graph connected so backward works on empty batches
        parts = [input.sum() * 0, offset.sum() * 0, weight.sum() * 0]
        if mask is not None:
            parts.append(mask.sum() * 0)
        if bias is not None:
            parts.append(bias.sum() * 0)
        return out + sum(parts)
    name = select_backend(input, backend, _needs_grad(input, offset, mask, weight, bias))
    if name == "torchvision":
        return _run_torchvision(input, offset, mask, weight, bias, stride, padding, dilation,
                                groups, deform_groups)
    return _DeformConvTorch.apply(input, offset, mask, weight, bias, stride, padding, dilation,
                                  groups, deform_groups, Ho, Wo)


def _normalize(stride, padding, dilation, groups, deform_groups):
    return (_pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation"),
            int(groups), int(deform_groups))


def forward_nograd(input, offset, mask, weight, bias, stride, padding, dilation, groups,
                   deform_groups, backend="auto"):
    """Output of the (modulated if ``mask`` is given) deformable convolution, no autograd graph."""
    with torch.no_grad():
        return _dispatch(input, offset, mask, weight, bias, stride, padding, dilation, groups,
                         deform_groups, backend)


def backward(input, offset, mask, weight, has_bias, grad_out, stride, padding, dilation, groups,
             deform_groups, needs=(True, True, True, True, True), backend="auto"):
    """Gradients (input, offset, mask, weight, bias) for ``grad_out``; None where not needed.

    Used by the ``mmcv._ext`` stand-in, whose callers own the autograd Function.
    """
    stride, padding, dilation, groups, deform_groups = _normalize(
        stride, padding, dilation, groups, deform_groups)
    bias = input.new_zeros((weight.shape[0],)) if has_bias else None
    Ho, Wo = _check(input, offset, mask, weight, bias, stride, padding, dilation, groups,
                    deform_groups)
    needs = tuple(bool(n) for n in needs)
    if mask is None:
        needs = needs[:2] + (False,) + needs[3:]
    if not has_bias:
        needs = needs[:4] + (False,)
    name = select_backend(input, backend, needs_grad=True)
    if name == "torch" or input.shape[0] == 0:
        if input.shape[0] == 0:
            zl = [torch.zeros_like(t) if (t is not None and n) else None
                  for t, n in zip((input, offset, mask, weight, bias), needs)]
            return tuple(zl)
        return _torch_backward(input, offset, mask, weight, has_bias, grad_out, stride, padding,
                               dilation, groups, deform_groups, Ho, Wo, needs)
    tensors = [input, offset, mask, weight, bias]
    leaves = [None if t is None else t.detach().requires_grad_(n) for t, n in zip(tensors, needs)]
    with torch.enable_grad():
        out = _run_torchvision(leaves[0], leaves[1], leaves[2], leaves[3], leaves[4], stride,
                               padding, dilation, groups, deform_groups)
        wanted = [t for t, n in zip(leaves, needs) if n]
        grads = list(torch.autograd.grad(out, wanted, grad_out)) if wanted else []
    return tuple(grads.pop(0) if n else None for n in needs)


def deform_conv2d(input, offset, weight, stride=1, padding=0, dilation=1, groups=1,
                  deform_groups=1, bias=False, im2col_step=32, backend="auto"):
    """Deformable convolution v1 with mmcv's argument order.

    ``input`` [B, C, H, W]; ``offset`` [B, deform_groups*2*kh*kw, Ho, Wo] with
    (dy, dx) per kernel tap; ``weight`` [Cout, C/groups, kh, kw].  Like mmcv,
    the offset's dtype decides the compute dtype (``input.type_as(offset)``).
    ``bias`` must be False (mmcv's DCNv1 has no bias); ``im2col_step`` only
    changes summation order in mmcv and is accepted for signature
    compatibility.
    """
    if bias is not False and bias is not None:
        raise CompatUnsupportedError("deform_conv2d: bias is not supported (mmcv: 'Only support "
                                     "bias is False.'); use modulated_deform_conv2d")
    if input is not None and input.dim() != 4:
        raise ValueError("Expected 4D tensor as input, got %dD tensor instead." % input.dim())
    input = input.type_as(offset)
    weight = weight.type_as(input)
    return _dispatch(input, offset, None, weight, None, stride, padding, dilation, groups,
                     deform_groups, backend)


def modulated_deform_conv2d(input, offset, mask, weight, bias=None, stride=1, padding=0,
                            dilation=1, groups=1, deform_groups=1, backend="auto"):
    """Modulated deformable convolution (DCNv2) with mmcv's argument order.

    ``mask`` [B, deform_groups*kh*kw, Ho, Wo]; ``bias`` [Cout] or None.  Casts
    like mmcv: everything to ``offset``'s dtype.
    """
    if input is not None and input.dim() != 4:
        raise ValueError("Expected 4D tensor as input, got %dD tensor instead." % input.dim())
    input = input.type_as(offset)
    weight = weight.type_as(input)
    mask = mask.type_as(input)
    if bias is not None:
        bias = bias.type_as(input)
    return _dispatch(input, offset, mask, weight, bias, stride, padding, dilation, groups,
                     deform_groups, backend)
