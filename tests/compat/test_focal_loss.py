"""sigmoid_focal_loss_forward/backward of the mmcv._ext stand-in: mmcv's pinned values, a
float64 loop reference, gradcheck of the forward/backward pair, the weight by label."""

import math

import pytest
import torch

from envdoctor.compat import ext
from envdoctor.compat.errors import CompatUnsupportedError

# mmcv tests/test_ops/test_focal_loss.py, gamma 2, alpha 0.25, reduction 'mean'
INPUTS = [
    ([[1., 0], [0, 1.]], [0, 1]),
    ([[1., 0, -1.], [0, 1., 2.]], [2, 1]),
    ([[1e-6, 2e-6, 3e-6], [4e-6, 5e-5, 6e-4], [7e-3, 8e-2, 9e-1]], [1, 2, 0]),
]
SIGMOID = [
    (0.13562961, [[-0.00657264, 0.11185755], [0.11185755, -0.00657264]]),
    (1.10251057, [[0.28808805, 0.11185755, -0.09602935], [0.11185755, -0.00657264, 0.40376765]]),
    (0.42287254, [[0.07457182, -0.02485716, 0.07457201], [0.07457211, 0.07457669, -0.02483728],
                  [-0.02462499, 0.08277918, 0.18050370]]),
]


def mmcv_protocol(x, t, gamma=2.0, alpha=0.25, weight=None):
    """What mmcv's SigmoidFocalLossFunction does around the kernels, reduction 'mean'."""
    w = x.new_empty(0) if weight is None else weight
    out = x.new_zeros(x.shape)
    ext.sigmoid_focal_loss_forward(x, t, w, out, gamma=gamma, alpha=alpha)
    gi = x.new_zeros(x.shape)
    ext.sigmoid_focal_loss_backward(x, t, w, gi, gamma=gamma, alpha=alpha)
    return out, out.sum() / x.shape[0], gi / x.shape[0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mmcv_pinned_values(dtype):
    for (x, t), (loss, grad) in zip(INPUTS, SIGMOID):
        _, got, g = mmcv_protocol(torch.tensor(x, dtype=dtype), torch.tensor(t))
        # mmcv's values are 8 digits of a float32 run: float64 differs by float32 rounding
        tol = 1e-7 if dtype == torch.float32 else 5e-7
        assert abs(got.item() - loss) <= tol
        assert (g - torch.tensor(grad, dtype=dtype)).abs().max().item() <= tol


def ref(x, t, gamma, alpha, weight=None):
    """Per element loss and gradient in float64 Python, from the formulas."""
    tiny = 1.1754943508222875e-38
    loss, grad = [], []
    for n, row in enumerate(x):
        lr, gr = [], []
        for c, v in enumerate(row):
            p = 1 / (1 + math.exp(-v))
            w = 1.0 if weight is None else weight[t[n]]
            if t[n] == c:
                lr.append(-alpha * (1 - p) ** gamma * math.log(max(p, tiny)) * w)
                gr.append(-alpha * (1 - p) ** gamma * (1 - p - gamma * p * math.log(max(p, tiny))) * w)
            else:
                lr.append(-(1 - alpha) * p ** gamma * math.log(max(1 - p, tiny)) * w)
                gr.append(-(1 - alpha) * p ** gamma * (gamma * (1 - p) * math.log(max(1 - p, tiny)) - p) * w)
        loss.append(lr)
        grad.append(gr)
    return torch.tensor(loss, dtype=torch.float64), torch.tensor(grad, dtype=torch.float64)


@pytest.mark.parametrize("gamma,alpha", [(2.0, 0.25), (1.5, 0.5), (0.0, 0.75)])
def test_equals_the_float64_reference_with_weights_and_background(gamma, alpha):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 6, generator=g, dtype=torch.float64) * 8
    x[0, :] = torch.tensor([200.0, -200.0, 40.0, -40.0, 0.0, 1e-9])  # saturated: the FLT_MIN clamp
    t = torch.randint(0, 7, (40,), generator=g)  # 6 = background
    t[0] = 1  # the target class has logit -200: p underflows below FLT_MIN
    for weight in (None, torch.rand(7, generator=g, dtype=torch.float64)):
        out, _, _ = mmcv_protocol(x, t, gamma, alpha, weight)
        gi = x.new_zeros(x.shape)
        ext.sigmoid_focal_loss_backward(x, t, x.new_empty(0) if weight is None else weight, gi,
                                        gamma=gamma, alpha=alpha)
        want_l, want_g = ref(x.tolist(), t.tolist(), gamma, alpha,
                             None if weight is None else weight.tolist())
        assert torch.isfinite(out).all()
        assert (out - want_l).abs().max().item() <= 1e-12
        assert (gi - want_g).abs().max().item() <= 1e-12
    # the clamp: a saturated logit gives -alpha*log(FLT_MIN) (= 87.3*alpha), not inf or BCE's 200*alpha
    out, _, _ = mmcv_protocol(x, t, gamma, alpha)
    assert abs(out[0, 1].item() - (-alpha * math.log(1.1754943508222875e-38))) <= 1e-9


def test_gradcheck_of_the_kernel_pair():
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(5, 4, generator=g, dtype=torch.float64) * 2).requires_grad_(True)
    t = torch.tensor([0, 3, 4, 1, 2])

    class F(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            out = x.new_zeros(x.shape)
            ext.sigmoid_focal_loss_forward(x, t, x.new_empty(0), out, gamma=2.0, alpha=0.25)
            return out

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            gi = x.new_zeros(x.shape)
            ext.sigmoid_focal_loss_backward(x, t, x.new_empty(0), gi, gamma=2.0, alpha=0.25)
            return gi * grad

    assert torch.autograd.gradcheck(F.apply, (x,), eps=1e-6, atol=1e-7)


def test_weight_past_the_classes_is_refused():
    x = torch.zeros(2, 3)
    with pytest.raises(CompatUnsupportedError, match="outside the 3 class weights"):
        ext.sigmoid_focal_loss_forward(x, torch.tensor([0, 3]), torch.ones(3), torch.zeros(2, 3),
                                       gamma=2.0, alpha=0.25)
