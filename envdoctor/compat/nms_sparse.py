"""Fast exact paths of the NMS kernels: only the pairs of boxes that overlap are ever compared.

mmcv's kernels test every pair (``nms``: each kept box against every later one; ``softnms``:
the selected box against every remaining one).  A pair whose intersection is empty cannot
change anything when every area is positive and the threshold is not negative: its IoU is
exactly 0, which suppresses nothing in ``nms`` and gives soft-NMS a weight of exactly 1.  So
the pairs that overlap in x are listed by a sweep (boxes sorted by ``x1``; a ``searchsorted``
bounds each box's partners), tested with the kernels' own float32 formulas, and the rest is
decided on that sparse set:

* ``nms``: a greedy fixpoint over the suppression edges (a box with no live suppressor left
  is kept, the boxes it suppresses are removed, repeat), a bounded number of vectorised
  rounds, then one sequential pass over what is left -- the same kept set as the greedy loop.
* ``softnms``: the selection is sequential and stays so, but in rounds: the top ``K`` scores
  are simulated exactly (Python floats rounded to float32 after every product, like the C
  ``float`` code) while their maximum is strictly above every score outside them (those can
  only decrease), then the round's decays are applied to all boxes at once, in selection
  order (one ``scatter_reduce`` over the selected rows).  Removal below ``min_score`` is
  implied: scores only decrease, so the selection ends when the maximum falls below it.

Both paths are used only where they are provably the kernel's result (:func:`sparse_ok`,
:func:`softnms_fast`'s gate); a tie at the top of soft-NMS (the kernel breaks it by the
array position its swaps left the box in) returns ``None`` and the caller runs the loop.
"""

from array import array

import torch

__all__ = ["sparse_ok", "overlap_pairs", "greedy_edges", "softnms_fast"]

# candidate pairs handled at once (bounds the temporaries: ~40 bytes a pair)
_PAIRS = 1 << 22
# vectorised fixpoint rounds of the greedy NMS before the sequential finish
_ROUNDS = 12
# scores simulated per soft-NMS round, and the largest padded neighbour table (entries)
_POOL = 48
_TABLE = 1 << 24
# up to this many boxes the weights are one dense matrix (16 MB at 2048)
_DENSE = 2048


def _columns(boxes):
    b = boxes.detach().to(torch.float32)
    return b[:, 0].contiguous(), b[:, 1].contiguous(), b[:, 2].contiguous(), b[:, 3].contiguous()


def sparse_ok(x1, y1, x2, y2, areas, thr):
    """Whether an empty intersection provably means IoU exactly 0 (and so: no effect)."""
    if not thr >= 0:  # also NaN
        return False
    if x1.numel() == 0:
        return True
    fin = torch.isfinite(x1).all() & torch.isfinite(y1).all() & torch.isfinite(x2).all()
    fin = fin & torch.isfinite(y2).all() & (areas > 0).all()
    return bool(fin)


def overlap_pairs(x1, x2, offset):
    """Chunks of (a, b) index pairs, each unordered pair once, that may overlap in x.

    A superset of the pairs whose float32 width ``min(x2) - max(x1) + offset`` is positive:
    for ``b`` after ``a`` in ``x1`` order, that needs ``x1[b] < x2[a] + offset`` (rounding is
    monotone), bounded here in float64 with a margin.
    """
    n = x1.shape[0]
    if n < 2:
        return
    ox = torch.argsort(x1)
    xs1 = x1[ox].double()
    xs2 = x2[ox].double()
    hi = xs2 + offset + (xs2.abs() + abs(offset) + 1.0) * 2.0 ** -20
    end = torch.searchsorted(xs1, hi, right=True)
    ar = torch.arange(n, device=x1.device)
    cnt = (end - ar - 1).clamp_(min=0)
    cum = torch.cumsum(cnt, 0)
    total = int(cum[-1]) if n else 0
    p0 = 0
    while p0 < n and total:
        # rows p0..p1-1 whose pairs fit in one chunk (at least one row)
        base = int(cum[p0 - 1]) if p0 else 0
        p1 = int(torch.searchsorted(cum, base + _PAIRS, right=True))
        p1 = min(n, max(p1, p0 + 1))
        c = cnt[p0:p1]
        m = int(c.sum())
        if m:
            rows = torch.repeat_interleave(ar[p0:p1], c)
            start = torch.cumsum(c, 0) - c
            k = torch.arange(m, device=x1.device) - torch.repeat_interleave(start, c)
            yield ox[rows], ox[rows + 1 + k]
        p0 = p1


def _overlapping(xyxy, a, b, offset):
    """The pairs with a positive intersection, and it: the kernels' float32 formula."""
    x1, y1, x2, y2 = xyxy
    w = (torch.minimum(x2.index_select(0, a), x2.index_select(0, b))
         - torch.maximum(x1.index_select(0, a), x1.index_select(0, b)) + offset).clamp_(min=0)
    h = (torch.minimum(y2.index_select(0, a), y2.index_select(0, b))
         - torch.maximum(y1.index_select(0, a), y1.index_select(0, b)) + offset).clamp_(min=0)
    inter = w * h
    hit = torch.nonzero(inter > 0).flatten()
    return a[hit], b[hit], inter[hit]


def _suppress(areas, a, b, inter, thr, rule):
    union = areas[a] + areas[b] - inter
    if rule == "cuda":
        return inter > union * thr
    return inter / union > thr


def nms_edges(x1, y1, x2, y2, areas, offset, thr, rule):
    """(src, dst) with src < dst (positions in score order): src suppresses dst when kept."""
    src, dst = [], []
    xyxy = (x1, y1, x2, y2)
    for a, b in overlap_pairs(x1, x2, offset):
        a, b, inter = _overlapping(xyxy, a, b, offset)
        hit = _suppress(areas, a, b, inter, thr, rule)
        a, b = a[hit], b[hit]
        src.append(torch.minimum(a, b))
        dst.append(torch.maximum(a, b))
    if not src:
        e = torch.empty((0,), dtype=torch.int64, device=x1.device)
        return e, e
    return torch.cat(src), torch.cat(dst)


def greedy_edges(n, src, dst, rounds=_ROUNDS):
    """Kept positions (ascending) of the greedy NMS over suppression edges ``src -> dst``."""
    dev = src.device
    kept = torch.zeros(n, dtype=torch.bool, device=dev)
    removed = torch.zeros(n, dtype=torch.bool, device=dev)
    for _ in range(rounds):
        # a box with no live suppressor left is kept (its earlier boxes are all decided)
        blocked = torch.zeros(n, dtype=torch.bool, device=dev)
        blocked[dst] = True
        kept |= ~blocked & ~removed
        removed[dst[kept[src]]] = True
        live = ~(kept[src] | removed[src] | removed[dst])
        src, dst = src[live], dst[live]
        if src.numel() == 0:
            break
    if src.numel():
        # the rest, sequentially: edges sorted by source; every edge into a box comes from an
        # earlier one, so a source is decided when its first edge is reached
        srt = torch.argsort(src, stable=True)
        s_l, d_l = src[srt].tolist(), dst[srt].tolist()
        gone = bytearray(n)
        for p in removed.nonzero().flatten().tolist():
            gone[p] = 1
        for s, d in zip(s_l, d_l):
            if not gone[s]:
                gone[d] = 1
        out = torch.frombuffer(gone, dtype=torch.uint8).to(dev) == 0
        kept = out
    else:
        kept = ~removed
    return torch.nonzero(kept).flatten()


def _f32_weights(ovr, method, thr, sig):
    if method == 0:
        return torch.where(ovr >= thr, 0.0, 1.0).to(torch.float32)
    if method == 1:
        return torch.where(ovr >= thr, 1 - ovr, torch.ones_like(ovr))
    if method == 2:
        # expf of the float argument, correctly rounded (via double) like the C library
        return torch.exp((-(ovr * ovr) / sig).double()).to(torch.float32)
    return torch.ones_like(ovr)


def _weighted_pairs(x1, y1, x2, y2, areas, offset, method, thr, sig):
    """(a, b, w): every unordered pair whose soft-NMS weight is not exactly 1, once."""
    out_a, out_b, out_w = [], [], []
    xyxy = (x1, y1, x2, y2)
    for a, b in overlap_pairs(x1, x2, offset):
        a, b, inter = _overlapping(xyxy, a, b, offset)
        # the kernel's ovr = inter / (area_i + area_j - inter): symmetric in i, j
        wt = _f32_weights(inter / (areas[a] + areas[b] - inter), method, thr, sig)
        hit = wt != 1
        out_a.append(a[hit])
        out_b.append(b[hit])
        out_w.append(wt[hit])
    if not out_a:
        e = torch.empty((0,), dtype=torch.int64)
        return e, e, torch.empty((0,), dtype=torch.float32)
    return torch.cat(out_a), torch.cat(out_b), torch.cat(out_w)


class _Dense:
    """All pairwise weights as one [N, N] float32 matrix (1 = no effect); for small N."""

    def __init__(self, n, a, b, w):
        self.w = torch.ones((n, n), dtype=torch.float32)
        self.w[a, b] = w
        self.w[b, a] = w
        self.cols = torch.arange(n).repeat(_POOL)
        self.n = n

    def rows(self, sel_t):
        return self.cols[:sel_t.shape[0] * self.n], self.w.index_select(0, sel_t).reshape(-1)

    def block(self, pool_t):
        return self.w.index_select(0, pool_t).index_select(1, pool_t)


class _Table:
    """Per box, its neighbours (padding: id N) and their weights (padding: 1); for large N."""

    def __init__(self, n, a, b, w):
        src, dst, wt = torch.cat([a, b]), torch.cat([b, a]), torch.cat([w, w])
        cnt = torch.bincount(src, minlength=n)
        deg = max(1, int(cnt.max())) if src.numel() else 1
        srt = torch.argsort(src, stable=True)
        src, dst, wt = src[srt], dst[srt], wt[srt]
        slot = torch.arange(src.shape[0]) - torch.repeat_interleave(torch.cumsum(cnt, 0) - cnt, cnt)
        self.nb = torch.full((n, deg), n, dtype=torch.int64)
        self.wt = torch.ones((n, deg), dtype=torch.float32)
        self.nb[src, slot] = dst
        self.wt[src, slot] = wt
        self.posmap = torch.full((n + 1,), -1, dtype=torch.int64)

    def rows(self, sel_t):
        return self.nb.index_select(0, sel_t).reshape(-1), self.wt.index_select(0, sel_t).reshape(-1)

    def block(self, pool_t):
        k = pool_t.shape[0]
        self.posmap[pool_t] = torch.arange(k)
        pos = self.posmap[self.nb.index_select(0, pool_t)]
        self.posmap[pool_t] = -1
        sub = torch.ones((k, k + 1), dtype=torch.float32)
        sub.scatter_(1, torch.where(pos < 0, k, pos), self.wt.index_select(0, pool_t))
        return sub[:, :k]


def _weights(n, a, b, w):
    if n <= _DENSE:
        return _Dense(n, a, b, w)
    deg = int(torch.bincount(torch.cat([a, b]), minlength=n).max()) if a.numel() else 1
    return _Table(n, a, b, w) if n * deg <= _TABLE else None


def softnms_fast(boxes, scores, offset, method, thr, sig, mins):
    """(selected indices, their scores) of mmcv's CPU soft-NMS, or None where not provable.

    Preconditions checked here: finite boxes with positive areas, finite non-negative scores,
    ``min_score > 0``, weights in [0, 1] and exactly 1 at IoU 0 (method 0 needs ``thr > 0``,
    method 2 ``sigma > 0``).  Returns None for those it cannot prove, and on a tie at the top.
    """
    x1, y1, x2, y2 = _columns(boxes)
    n = x1.shape[0]
    sc = scores.detach().to(torch.float32)
    areas = (x2 - x1 + offset) * (y2 - y1 + offset)
    if not (mins > 0 and mins != float("inf")):
        return None
    if (method == 0 and not thr > 0) or (method == 2 and not sig > 0) or not thr == thr:
        return None
    if not (sparse_ok(x1, y1, x2, y2, areas, 0.0) and bool(torch.isfinite(sc).all())
            and bool((sc >= 0).all())):
        return None
    store = _weights(n, *_weighted_pairs(x1, y1, x2, y2, areas, offset, method, thr, sig))
    if store is None:
        return None
    work = torch.cat([sc, sc.new_zeros(1)])  # slot n: the table's padding lands there
    sel, vals = [], []
    dead = float("-inf")
    f32 = array("f", [0.0])
    while len(sel) < n:
        k = min(_POOL, n)
        top_v, top_i = torch.topk(work[:n], min(k + 1, n))
        tv, ti = top_v.tolist(), top_i.tolist()
        tau = tv[k] if n > k else dead
        pool_t = top_i[:k]
        blk = store.block(pool_t)
        # per pool member, the other members its selection would change
        ne = blk != 1
        nz = ne.nonzero().tolist()
        wl = blk[ne].tolist()
        touch = [[] for _ in range(k)]
        for (r, c), w in zip(nz, wl):
            touch[r].append((c, w))
        s = tv[:k]
        picked = []
        finished = False
        while True:
            v = max(s)
            if (sel or picked) and max(v, tau) < mins:
                # every score (outside the pool: at most tau) is below min_score: the kernel
                # removed all the remaining boxes
                finished = True
                break
            if not v > tau:
                break
            j = s.index(v)
            s[j] = dead
            if v in s:
                return None  # a tie: the kernel's answer depends on array positions
            picked.append(j)
            vals.append(v)
            for q, w in touch[j]:
                if s[q] != dead:
                    # the float32 product: exact in a double, rounded once by the store
                    f32[0] = s[q] * w
                    s[q] = f32[0]
        ids = [ti[j] for j in picked]
        sel += ids
        if ids:
            sel_t = torch.tensor(ids, dtype=torch.int64)
            # the round's decays on every box, in selection order (scatter_reduce visits the
            # index in order, each product rounded to float32)
            idx, wts = store.rows(sel_t)
            work.scatter_reduce_(0, idx, wts, "prod")
            work.index_fill_(0, sel_t, -1.0)
        if finished:
            break
        if not picked:
            return None  # the maximum ties with a score outside the pool
    return sel, vals
