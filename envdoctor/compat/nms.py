"""mmcv's axis-aligned NMS kernels (``nms``, ``softnms``, ``nms_match``), exact, in PyTorch.

The functions have the signatures of mmcv's ``_ext`` bindings (csrc/pytorch/pybind.cpp; the
same in mmcv 1.x and 2.x) and follow the kernel of the device the tensors are on:

* ``nms`` on CPU tensors: boxes and areas read as float32, area ``(x2-x1+offset)*(y2-y1+offset)``,
  order ``scores.sort(0, descending=True)`` (torch's unstable sort, as mmcv calls it), a box is
  suppressed when ``inter / (area_i + area_j - inter) > thr`` (float32 division, ``thr``
  rounded to float32); kept indices in descending-score order.
* ``nms`` on CUDA tensors: mmcv's CUDA kernel's multiplied form
  ``inter > thr * (area_i + area_j - inter)`` instead of the division (it can keep or
  suppress a box whose IoU equals the threshold to float rounding differently from the CPU).
* ``softnms``: CPU only (mmcv has no other kernel); methods 0 (hard, ``>=``), 1 (linear,
  ``1 - iou`` when ``iou >= thr``), 2 (gaussian, ``exp(-iou^2 / sigma)``); boxes whose score
  falls below ``min_score`` are swapped with the last one; ``dets`` (N x 5) filled in place.
* ``nms_match``: CPU only; no offset, ``>=``; one list per kept box, the kept index first.

On CPU with ``offset == 0`` torchvision's ``nms`` kernel is the same algorithm and is used when
it loads (``ENVDOCTOR_COMPAT_BACKEND=torch`` turns it off): it is handed the boxes already in
mmcv's order with strictly decreasing stand-in scores (so its own sort cannot reorder ties)
and the float32-rounded threshold (so its float-vs-double comparison is mmcv's float one).
"""

import os

import torch

from .nms_sparse import greedy_edges, nms_edges, softnms_fast, sparse_ok

__all__ = ["nms", "softnms", "nms_match", "nms_keep_sorted", "greedy_keep"]

# rows of the pairwise-suppression matrix computed at once (bounds the float32 temporaries)
_ROWS = 1024


def _f32(v):
    """A Python float rounded to float32, as the kernels' ``float`` parameters receive it."""
    return float(torch.tensor(float(v), dtype=torch.float32))


def _columns(boxes):
    b = boxes.detach().to(torch.float32)
    return b[:, 0].contiguous(), b[:, 1].contiguous(), b[:, 2].contiguous(), b[:, 3].contiguous()


def _overlap_rows(x1, y1, x2, y2, areas, rows, cols, offset, thr, rule):
    """suppress[r, c] for boxes ``rows`` against ``cols`` (index tensors), float32 like the kernels."""
    w = (torch.minimum(x2[rows, None], x2[None, cols]) - torch.maximum(x1[rows, None], x1[None, cols])
         + offset).clamp_(min=0)
    h = (torch.minimum(y2[rows, None], y2[None, cols]) - torch.maximum(y1[rows, None], y1[None, cols])
         + offset).clamp_(min=0)
    inter = w * h
    union = areas[rows, None] + areas[None, cols] - inter
    if rule == "cuda":
        return inter > union * thr
    if rule == "match":
        return inter / union >= thr
    return inter / union > thr


def _to_bytes(t):
    try:
        return t.numpy().tobytes()
    except Exception:  # torch without numpy
        return bytes(t.flatten().tolist())


def _dead(removed, n, device):
    """The bit set ``removed`` (a Python int) as a bool tensor [n]."""
    raw = torch.tensor(list(removed.to_bytes((n + 7) // 8 or 1, "little")), dtype=torch.uint8)
    bits = (raw[:, None] >> torch.arange(8, dtype=torch.uint8)) & 1
    return bits.flatten()[:n].to(device=device, dtype=torch.bool)


def greedy_keep(n, suppress_rows, device, rows_per_block=_ROWS):
    """Greedy NMS given ``suppress_rows(rows, cols) -> bool [len(rows), len(cols)]`` over sorted boxes.

    The pairwise matrix is built in blocks of rows; the greedy scan then walks it with one
    Python integer per row as a bit set, so its cost is N small big-integer operations. A box
    removed by an earlier block suppresses nothing and needs no test, so each block computes only
    the rows and columns still alive (with a low threshold most boxes are gone after the first
    blocks: rotated NMS then clips a fraction of the pairs). Returns the kept positions (int64, CPU).
    """
    pad = (-n) % 8
    bitw = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8, device=device)
    allc = torch.arange(n, device=device)
    removed = 0
    keep = []
    for r0 in range(0, n, rows_per_block):
        r1 = min(n, r0 + rows_per_block)
        alive = ~_dead(removed, n, device) & (allc >= r0)
        rows = allc[r0:r1][alive[r0:r1]]
        if rows.numel() == 0:
            continue
        cols = allc[alive]
        sup = torch.zeros((rows.shape[0], n + pad), dtype=torch.bool, device=device)
        sup[:, cols] = suppress_rows(rows, cols) & (cols[None, :] > rows[:, None])
        packed = (sup.view(sup.shape[0], -1, 8).to(torch.uint8) * bitw).sum(-1, dtype=torch.uint8)
        data = _to_bytes(packed.cpu())
        stride = packed.shape[1]
        masks = {r: int.from_bytes(data[k * stride:(k + 1) * stride], "little")
                 for k, r in enumerate(rows.tolist())}
        for i in range(r0, r1):
            if not (removed >> i) & 1:
                keep.append(i)
                removed |= masks[i]
    return torch.tensor(keep, dtype=torch.int64)


def nms_keep_sorted(boxes_sorted, thr, offset, rule):
    """Greedy axis-aligned NMS over boxes already in score order; kept positions (int64).

    Only the overlapping pairs are tested where that is provably the same (see
    :mod:`.nms_sparse`); otherwise (a negative threshold, a box with no positive area,
    non-finite coordinates) the full pairwise matrix, in blocks.
    """
    x1, y1, x2, y2 = _columns(boxes_sorted)
    areas = (x2 - x1 + offset) * (y2 - y1 + offset)
    if sparse_ok(x1, y1, x2, y2, areas, thr):
        src, dst = nms_edges(x1, y1, x2, y2, areas, offset, thr, rule)
        return greedy_edges(x1.shape[0], src, dst)
    return greedy_keep(boxes_sorted.shape[0], lambda rows, cols: _overlap_rows(
        x1, y1, x2, y2, areas, rows, cols, offset, thr, rule), x1.device)


def _tv_nms():
    if os.environ.get("ENVDOCTOR_COMPAT_BACKEND", "").strip().lower() == "torch":
        return None
    from .dcn_tv import torchvision_available

    if not torchvision_available()[0]:
        return None
    try:
        op = torch.ops.torchvision.nms
        op.default  # noqa: B018
        return op
    except Exception:
        return None


def nms(boxes, scores, iou_threshold, offset):
    """``mmcv._ext.nms``: indices (int64, on the boxes' device) of the kept boxes, best first."""
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    offset = int(offset)
    thr = _f32(iou_threshold)
    order = scores.sort(0, descending=True)[1]
    boxes_sorted = boxes.detach().to(torch.float32).index_select(0, order)
    if boxes.device.type == "cuda":
        keep = nms_keep_sorted(boxes_sorted, thr, offset, "cuda")
        return order[keep.to(order.device)]
    tv = _tv_nms() if offset == 0 else None
    if tv is not None:
        n = boxes_sorted.shape[0]
        ranks = torch.arange(n, 0, -1, dtype=torch.float32)
        return order[tv(boxes_sorted.contiguous(), ranks, thr)]
    return order[nms_keep_sorted(boxes_sorted, thr, offset, "cpu")]


def _require_cpu(name, *tensors):
    for t in tensors:
        if t.device.type != "cpu":
            # mmcv's dispatcher message for a kernel it only has on the CPU
            raise RuntimeError("%s_impl: implementation for device %s not found."
                               % (name, t.device))


def softnms(boxes, scores, dets, iou_threshold, sigma, min_score, method, offset):
    """``mmcv._ext.softnms`` (CPU): fills ``dets`` rows in selection order, returns the indices."""
    _require_cpu("softnms", boxes, scores, dets)
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64)
    offset = int(offset)
    method = int(method)
    thr, sig, mins = _f32(iou_threshold), _f32(sigma), _f32(min_score)
    fast = softnms_fast(boxes, scores, offset, method, thr, sig, mins)
    if fast is not None:
        sel, vals = fast
        k = len(sel)
        idx = torch.tensor(sel, dtype=torch.int64)
        rows = torch.cat([boxes.detach().to(torch.float32).index_select(0, idx),
                          torch.tensor(vals, dtype=torch.float32)[:, None]], 1)
        dets[:k].copy_(rows.to(dets.dtype))
        return idx
    return _softnms_loop(boxes, scores, dets, offset, method, thr, sig, mins)


def _softnms_loop(boxes, scores, dets, offset, method, thr, sig, mins):
    """The kernel's loop, one selection at a time (every case, including ties at the top)."""
    x1, y1, x2, y2 = (c.clone() for c in _columns(boxes))
    sc = scores.detach().to(torch.float32).clone()
    areas = (x2 - x1 + offset) * (y2 - y1 + offset)
    inds = torch.arange(boxes.shape[0], dtype=torch.int64)
    cols = [x1, y1, x2, y2, sc, areas, inds]
    n = boxes.shape[0]
    out = torch.empty((n, 5), dtype=torch.float32)
    i = 0
    while i < n:
        # first position of the maximum (the kernel's strict '<' scan), swapped to i
        m = i + int(torch.argmax(sc[i:n]))
        if m != i:
            for c in cols:
                c[i], c[m] = c[m].clone(), c[i].clone()
        out[i, 0], out[i, 1], out[i, 2], out[i, 3], out[i, 4] = x1[i], y1[i], x2[i], y2[i], sc[i]
        if i + 1 < n:
            t = slice(i + 1, n)
            w = (torch.minimum(x2[i], x2[t]) - torch.maximum(x1[i], x1[t]) + offset).clamp_(min=0)
            h = (torch.minimum(y2[i], y2[t]) - torch.maximum(y1[i], y1[t]) + offset).clamp_(min=0)
            inter = w * h
            ovr = inter / (areas[i] + areas[t] - inter)
            if method == 0:
                weight = torch.where(ovr >= thr, 0.0, 1.0)
            elif method == 1:
                weight = torch.where(ovr >= thr, 1 - ovr, torch.ones_like(ovr))
            elif method == 2:
                # expf of the float argument, correctly rounded (via double) like the C library
                weight = torch.exp((-(ovr * ovr) / sig).double()).to(torch.float32)
            else:
                weight = torch.ones_like(ovr)
            sc[t] *= weight
            n = i + 1 + _compact(cols, i + 1, n, sc[t] < mins)
        i += 1
    dets[:n].copy_(out[:n].to(dets.dtype))
    return inds[:n].clone()


def _compact(cols, start, end, below):
    """The kernel's removal: each box below ``min_score`` takes the last box's place.

    Scanning forward, a removed position is refilled from the tail (tail boxes that are
    themselves below are dropped on the way), so the survivors are: those before the new end
    in place, and the holes there filled by the surviving tail boxes, last one first.
    """
    keep = ~below
    k = int(keep.sum())
    holes = torch.nonzero(below[:k]).flatten()
    if holes.numel():
        fill = (torch.nonzero(keep[k:]).flatten() + k).flip(0)
        for c in cols:
            seg = c[start:end]
            seg[holes] = seg[fill]
    return k


def nms_match(dets, iou_threshold):
    """``mmcv._ext.nms_match`` (CPU): for each kept box, [kept index, suppressed indices...]."""
    _require_cpu("nms_match", dets)
    if dets.numel() == 0:
        return []
    thr = _f32(iou_threshold)
    x1, y1, x2, y2 = _columns(dets)
    scores = dets.detach().to(torch.float32)[:, 4].contiguous()
    areas = (x2 - x1) * (y2 - y1)
    order = scores.sort(0, descending=True)[1]
    n = dets.shape[0]
    suppressed = torch.zeros(n, dtype=torch.bool)
    matched = []
    for p in range(n):
        i = int(order[p])
        if suppressed[i]:
            continue
        later = order[p + 1:]
        hit = _overlap_rows(x1, y1, x2, y2, areas, torch.tensor([i]), later, 0, thr, "match")[0]
        hit &= ~suppressed[later]
        js = later[hit]
        suppressed[js] = True
        matched.append([i] + js.tolist())
    return matched
