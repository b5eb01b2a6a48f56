"""A BasicVSR++ / E2FGVI-style video network on mmcv's ModulatedDeformConv2d (runs inside a test env).

Not mmagic's code (mmagic 1.2.0 imports diffusers and transformers with ``mmagic.models``; see
docs/compat-models.md): a small network with the structure those models share -- features per
frame, second-order flow-guided deformable alignment (a subclass of ``mmcv.ops.
ModulatedDeformConv2d`` whose offsets are residuals on the optical flow of the previous two
frames, mask by sigmoid, through ``mmcv.ops.modulated_deform_conv2d``), forward and backward
propagation, pixel-shuffle upsampling -- trained for one step and run for inference.
"""

import time

import torch
from torch import nn
from torch.nn import functional as F

MID, GROUPS, FRAMES, SIZE = 32, 8, 4, 24


def flow_warp(x, flow):
    """Backward-warp x by flow (dx, dy) in pixels, bilinear, zero outside."""
    n, _, h, w = x.shape
    gy, gx = torch.meshgrid(torch.arange(h, dtype=x.dtype), torch.arange(w, dtype=x.dtype), indexing="ij")
    px = gx + flow[:, 0]
    py = gy + flow[:, 1]
    grid = torch.stack([2 * px / max(w - 1, 1) - 1, 2 * py / max(h - 1, 1) - 1], dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def make_alignment_class():
    from mmcv.ops import ModulatedDeformConv2d, modulated_deform_conv2d

    class SecondOrderAlignment(ModulatedDeformConv2d):
        """Offsets = max_residue * tanh(residual) + the flows to the previous two frames."""

        def __init__(self, *args, max_residue_magnitude=10, **kwargs):
            self.max_residue_magnitude = max_residue_magnitude
            super().__init__(*args, **kwargs)
            k = self.kernel_size[0] * self.kernel_size[1]
            self.conv_offset = nn.Sequential(
                nn.Conv2d(3 * self.out_channels + 4, self.out_channels, 3, 1, 1),
                nn.LeakyReLU(0.1, inplace=True),
                nn.Conv2d(self.out_channels, 3 * k * self.deform_groups, 3, 1, 1))
            with torch.no_grad():
                self.conv_offset[-1].weight.normal_(0, 1e-3)
                self.conv_offset[-1].bias.zero_()

        def forward(self, x, extra_feat, flow_1, flow_2):
            out = self.conv_offset(torch.cat([extra_feat, flow_1, flow_2], dim=1))
            o1, o2, mask = torch.chunk(out, 3, dim=1)
            offset = self.max_residue_magnitude * torch.tanh(torch.cat((o1, o2), dim=1))
            off_1, off_2 = torch.chunk(offset, 2, dim=1)
            off_1 = off_1 + flow_1.flip(1).repeat(1, off_1.size(1) // 2, 1, 1)
            off_2 = off_2 + flow_2.flip(1).repeat(1, off_2.size(1) // 2, 1, 1)
            return modulated_deform_conv2d(x, torch.cat([off_1, off_2], dim=1), torch.sigmoid(mask),
                                           self.weight, self.bias, self.stride, self.padding,
                                           self.dilation, self.groups, self.deform_groups)

    return SecondOrderAlignment


class VideoNet(nn.Module):
    def __init__(self):
        super().__init__()
        align = make_alignment_class()
        self.feat = nn.Sequential(nn.Conv2d(3, MID, 3, 1, 1), nn.LeakyReLU(0.1, inplace=True))
        self.align = nn.ModuleDict({d: align(2 * MID, MID, 3, padding=1, deform_groups=GROUPS)
                                    for d in ("bwd", "fwd")})
        self.fuse = nn.ModuleDict({d: nn.Conv2d(2 * MID, MID, 3, 1, 1) for d in ("bwd", "fwd")})
        self.up = nn.Sequential(nn.Conv2d(3 * MID, 3 * 4, 3, 1, 1), nn.PixelShuffle(2))

    def propagate(self, feats, flows, direction):
        """Second-order propagation: frame i aligned from the propagated features of i-1 and i-2."""
        order = range(len(feats)) if direction == "fwd" else range(len(feats) - 1, -1, -1)
        order = list(order)
        out = {}
        zero_feat = feats[0].new_zeros(feats[0].shape)
        zero_flow = flows[0].new_zeros(flows[0].shape)
        for step, i in enumerate(order):
            prev_1 = out[order[step - 1]] if step >= 1 else zero_feat
            prev_2 = out[order[step - 2]] if step >= 2 else zero_feat
            flow_1 = flows[i] if step >= 1 else zero_flow
            flow_2 = flow_1 + flow_warp(flows[i], flow_1) if step >= 2 else zero_flow
            cond = torch.cat([flow_warp(prev_1, flow_1), feats[i], flow_warp(prev_2, flow_2)], dim=1)
            aligned = self.align[direction](torch.cat([prev_1, prev_2], dim=1), cond, flow_1, flow_2)
            out[i] = feats[i] + self.fuse[direction](torch.cat([aligned, feats[i]], dim=1))
        return [out[i] for i in range(len(feats))]

    def forward(self, frames, flows):
        feats = [self.feat(frames[:, t]) for t in range(frames.size(1))]
        fwd = self.propagate(feats, flows, "fwd")
        bwd = self.propagate(feats, flows, "bwd")
        return torch.stack([self.up(torch.cat([f, a, b], dim=1)) for f, a, b in zip(feats, fwd, bwd)], dim=1)


def run_alignment(calls):
    from harness import grad_summary

    torch.manual_seed(0)
    net = VideoNet()
    g = torch.Generator().manual_seed(1)
    frames = torch.rand(1, FRAMES, 3, SIZE, SIZE, generator=g)
    flows = [torch.randn(1, 2, SIZE, SIZE, generator=g) * 2 for _ in range(FRAMES)]
    target = torch.rand(1, FRAMES, 3, 2 * SIZE, 2 * SIZE, generator=g)
    out = {"config": "BasicVSR++/E2FGVI-style second-order deformable alignment (tests/compat/models/alignment.py)"}

    calls.clear()
    t0 = time.perf_counter()
    net.train()
    loss = F.l1_loss(net(frames, flows), target)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in net.named_parameters() if p.grad is not None}
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    torch.optim.Adam(net.parameters(), lr=1e-4).step()
    out["train_seconds"] = round(time.perf_counter() - t0, 3)
    out["train_calls"] = dict(calls)
    out.update(grad_summary(loss.item(), grads, before, net))
    # the offset heads learn: their last layer gets a gradient through the deformable conv
    out["offset_head_grad"] = sum(grads[f"align.{d}.conv_offset.2.weight"].abs().sum().item()
                                  for d in ("bwd", "fwd"))

    calls.clear()
    net.eval()
    t0 = time.perf_counter()
    with torch.no_grad():
        pred = net(frames, flows)
    out["infer_seconds"] = round(time.perf_counter() - t0, 3)
    out["infer_calls"] = dict(calls)
    out["pred_shape"] = list(pred.shape)
    out["pred_finite"] = bool(torch.isfinite(pred).all())
    return out
