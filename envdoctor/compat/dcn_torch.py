"""Pure-PyTorch backend of the exact deformable convolution (DCNv1 and modulated DCNv2).

Every sample position ``p0 + pk + dpk`` is split into its four integer corners once
(``floor`` of the exact coordinate), the corners are read with one ``index_select`` from a
zero-padded, channels-last copy of the input, and the bilinear weights carry the validity
window ``-1 < y < H``, ``-1 < x < W``.  The backward pass is written by hand (no autograd
through the sampling) and follows mmcv's kernels rule for rule, including the cut that makes
the offset gradient zero for a sample lying exactly on ``y == -1`` or ``x == -1``.  The work
is done in chunks of output positions so the temporary "columns" never exceed a few tens of
megabytes.
"""

import os

import torch
from torch.autograd import Function
from torch.autograd.function import once_differentiable

__all__ = ["DeformConvTorch", "torch_forward", "torch_backward"]

# Upper bound of the per-chunk working set of the torch backend (bytes).  The
# four gathered corners of one chunk are ``4 * rows * C * K`` elements.
_CHUNK_BYTES = int(os.environ.get("ENVDOCTOR_COMPAT_CHUNK_BYTES", 12 << 20))


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


def torch_forward(input, offset, mask, weight, bias, stride, padding, dilation, groups,
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


def torch_backward(input, offset, mask, weight, has_bias, grad_out, stride, padding, dilation,
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


class DeformConvTorch(Function):
    @staticmethod
    def forward(ctx, input, offset, mask, weight, bias, stride, padding, dilation, groups,
                deform_groups, Ho, Wo):
        ctx.geom = (stride, padding, dilation, groups, deform_groups, Ho, Wo)
        ctx.has_bias = bias is not None
        ctx.save_for_backward(input, offset, mask, weight)
        return torch_forward(input, offset, mask, weight, bias, stride, padding, dilation,
                              groups, deform_groups, Ho, Wo)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        input, offset, mask, weight = ctx.saved_tensors
        grads = torch_backward(input, offset, mask, weight, ctx.has_bias, grad_out, *ctx.geom,
                                needs=ctx.needs_input_grad[:5])
        return grads + (None,) * 7

