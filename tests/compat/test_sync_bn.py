"""MMSyncBN's sync_bn_* kernels of the mmcv._ext stand-in: mmcv's SyncBatchNormFunction call
sequence (facts of its Python) on one process equals batch norm in float64 (output, running
statistics, input/weight/bias gradients); on two simulated processes -- the batch split, the
all-reduces done by hand between the kernel calls as mmcv does with torch.distributed -- it
equals batch norm of the whole batch; float16; in-place conventions.  The kernels compute in
float32 (mmcv's buffers are float), so gradients are compared with float64 autograd rather
than finite differences."""

import pytest
import torch
import torch.nn.functional as F

from envdoctor.compat import ext


def _forward(parts, rm, rv, w, b, momentum, eps, stats_mode="default"):
    """mmcv's SyncBatchNormFunction.forward on len(parts) processes; returns outputs and the
    (norm, std) each process saves.  All-reduce = sum over the processes' tensors."""
    gs = len(parts)
    c = parts[0].size(1)
    vecs, x3s = [], []
    for x in parts:
        x3 = x.flatten(start_dim=2)
        mean = torch.zeros(c)
        if x3.size(0) > 0:
            ext.sync_bn_forward_mean(x3, mean)
        vec = torch.cat([mean, torch.ones(1) if x3.size(0) > 0 else torch.zeros(1)])
        if stats_mode == "N":
            vec *= x3.size(0)
        vecs.append(vec)
        x3s.append(x3)
    vec = sum(vecs)
    total = vec[-1]
    mean = vec[:c] / gs if stats_mode == "default" else vec[:c] / total.clamp(min=1)
    vars_ = []
    for x3 in x3s:
        var = torch.zeros(c)
        ext.sync_bn_forward_var(x3, mean, var)
        if stats_mode == "N":
            var *= x3.size(0)
        vars_.append(var)
    var = sum(vars_)
    var = var / gs if stats_mode == "default" else var / total.clamp(min=1)
    outs, saved = [], []
    for i, (x, x3) in enumerate(zip(parts, x3s)):
        out = torch.zeros_like(x)
        norm = torch.zeros_like(x3, dtype=torch.float)
        std = torch.zeros(c)
        # every process updates its own copy of the running stats identically; keep process 0's
        rmi, rvi = (rm, rv) if i == 0 else (rm.clone(), rv.clone())
        ext.sync_bn_forward_output(x3, mean, var, w, b, rmi, rvi, norm, std, out.view_as(x3),
                                   eps=eps, momentum=total.clamp(max=1) * momentum,
                                   group_size=gs)
        outs.append(out)
        saved.append((norm, std))
    return outs, saved


def _backward(gos, saved, w):
    gws, gbs = [], []
    for go, (norm, _) in zip(gos, saved):
        gw, gb = torch.zeros_like(w), torch.zeros_like(w)
        ext.sync_bn_backward_param(go.flatten(start_dim=2), norm, gw, gb)
        gws.append(gw)
        gbs.append(gb)
    gw, gb = sum(gws) / len(gos), sum(gbs) / len(gos)
    gis = []
    for go, (norm, std) in zip(gos, saved):
        gi = torch.zeros_like(go)
        ext.sync_bn_backward_data(go.flatten(start_dim=2), w, gw, gb, norm, std,
                                  gi.view_as(go.flatten(start_dim=2)))
        gis.append(gi)
    return gis, gw, gb


def _reference(x, rm, rv, w, b, momentum, eps, go):
    xd = x.double().requires_grad_()
    wd, bd = w.double().requires_grad_(), b.double().requires_grad_()
    rmd, rvd = rm.double(), rv.double()
    y = F.batch_norm(xd, rmd, rvd, wd, bd, True, momentum, eps)
    gx, gw, gb = torch.autograd.grad(y, (xd, wd, bd), go.double())
    return y.detach(), rmd, rvd, gx, gw, gb


def _close(a, b, tol=2e-5):
    return (a.double() - b.double()).abs().max().item() <= tol * (1 + b.abs().max().item())


@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (2, 5, 7), (3, 2, 2, 3, 4)])
def test_one_process_equals_batch_norm(shape):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g) * 3 + 1
    w, b = torch.rand(shape[1], generator=g), torch.randn(shape[1], generator=g)
    rm, rv = torch.randn(shape[1], generator=g), torch.rand(shape[1], generator=g) + 0.5
    go = torch.randn(*shape, generator=g)
    want = _reference(x, rm, rv, w, b, 0.1, 1e-5, go)
    (y,), saved = _forward([x], rm, rv, w, b, 0.1, 1e-5)
    (gi,), gw, gb = _backward([go], saved, w)
    for got, ref in zip((y, rm, rv, gi, gw * 1, gb), want):
        assert _close(got, ref)
    # what the kernel keeps for the backward: std = sqrt(var + eps) per channel
    dims = [d for d in range(x.dim()) if d != 1]
    assert _close(saved[0][1], torch.sqrt(x.double().var(dims, unbiased=False) + 1e-5))


@pytest.mark.parametrize("stats_mode", ["default", "N"])
def test_two_processes_equal_batch_norm_of_the_whole_batch(stats_mode):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 4, 5, 5, generator=g) * 2 - 1
    w, b = torch.rand(4, generator=g), torch.randn(4, generator=g)
    rm, rv = torch.zeros(4), torch.ones(4)
    go = torch.randn(6, 4, 5, 5, generator=g)
    want = _reference(x, rm, rv, w, b, 0.1, 1e-5, go)
    # equal halves (mmcv's 'default' assumes them); 'N' weights by each process's batch
    split = (3, 3) if stats_mode == "default" else (2, 4)
    parts, gos = x.split(split), go.split(split)
    ys, saved = _forward(list(parts), rm, rv, w, b, 0.1, 1e-5, stats_mode)
    gis, gw, gb = _backward(list(gos), saved, w)
    assert _close(torch.cat(ys), want[0]) and _close(rm, want[1])
    if stats_mode == "default":
        assert _close(rv, want[2])
    else:
        # the kernel unbiases with its own process's N*S*group_size (2*25*2 = 100 on process
        # 0, not the 150 of the whole batch): mmcv's running var for unequal batches
        var = x.double().var((0, 2, 3), unbiased=False)
        assert _close(rv, 0.9 + 0.1 * var * 100 / 99)
        assert not _close(rv, want[2])
    # mmcv averages the all-reduced weight/bias gradients over the processes
    assert _close(gw * 2, want[4]) and _close(gb * 2, want[5])
    if stats_mode == "default":
        assert _close(torch.cat(gis), want[3])
    else:
        # backward_data divides by the local N*S while the gradients are averaged over the
        # processes: the whole batch's input gradient only for equal batches (mmcv's kernel)
        for gi, go_, (norm, std) in zip(gis, gos, saved):
            n_s = go_.size(0) * 25
            want_gi = (w.double().view(1, -1, 1, 1) * (go_.double() - (
                gw.double().view(1, -1, 1, 1) * norm.double().view_as(go_)
                + gb.double().view(1, -1, 1, 1)) / n_s) / std.double().view(1, -1, 1, 1))
            assert _close(gi, want_gi)
        assert not _close(torch.cat(gis), want[3])


def test_half_in_place_and_empty_batch():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 8, generator=g)
    mean = torch.full((3,), 7.0)
    ext.sync_bn_forward_mean(x.half(), mean)  # overwritten, read as float32
    assert torch.equal(mean, x.half().float().sum((0, 2)) / 16)
    var, std, norm = torch.zeros(3), torch.zeros(3), torch.zeros(2, 3, 8)
    ext.sync_bn_forward_var(x.half(), mean, var)
    out = torch.zeros(2, 3, 8, dtype=torch.float16)
    rm, rv = torch.zeros(3), torch.ones(3)
    ext.sync_bn_forward_output(x.half(), mean, var, torch.ones(3), torch.zeros(3), rm, rv, norm,
                               std, out, eps=1e-5, momentum=torch.tensor([0.5]), group_size=1)
    assert out.dtype == torch.float16 and torch.equal(out, norm.half())
    assert torch.equal(std, torch.sqrt(var + 1e-5))
    # running var unbiased by count/(count-1), count = N*S*group_size
    assert torch.allclose(rv, 0.5 * var * 16 / 15 + 0.5)
    # momentum 0 (mmcv's update flag for an empty global batch) leaves the running stats
    rm0, rv0 = rm.clone(), rv.clone()
    ext.sync_bn_forward_output(x, mean, var, torch.ones(3), torch.zeros(3), rm, rv, norm, std,
                               torch.zeros(2, 3, 8), eps=1e-5, momentum=torch.tensor([0.0]),
                               group_size=1)
    assert torch.equal(rm, rm0) and torch.equal(rv, rv0)
