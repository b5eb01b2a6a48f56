"""mmcv's module API: names, arguments, init, state_dict keys, checkpoint migration, subclassing."""

import math

import pytest
import torch
from torch import nn

from envdoctor.compat import mmcv_api as M
from envdoctor.compat import ops


def test_exports_like_mmcv_ops():
    import envdoctor.compat as c

    for name in ("DeformConv2d", "DeformConv2dPack", "ModulatedDeformConv2d",
                 "ModulatedDeformConv2dPack", "deform_conv2d", "modulated_deform_conv2d",
                 "DeformConv2dFunction", "ModulatedDeformConv2dFunction"):
        assert getattr(c, name) is getattr(M, name)
    assert M.deform_conv2d is M.DeformConv2dFunction.apply
    assert M.modulated_deform_conv2d is M.ModulatedDeformConv2dFunction.apply


def test_state_dict_keys_and_version():
    assert list(M.DeformConv2d(4, 2, 3).state_dict()) == ["weight"]
    assert not hasattr(M.DeformConv2d(4, 2, 3), "bias")
    sd = M.DeformConv2dPack(4, 2, 3).state_dict()
    assert list(sd) == ["weight", "conv_offset.weight", "conv_offset.bias"]
    assert sd._metadata[""]["version"] == 2
    assert list(M.ModulatedDeformConv2d(4, 2, 3).state_dict()) == ["weight", "bias"]
    assert list(M.ModulatedDeformConv2d(4, 2, 3, bias=False).state_dict()) == ["weight"]
    sd = M.ModulatedDeformConv2dPack(4, 2, 3, deform_groups=2).state_dict()
    assert list(sd) == ["weight", "bias", "conv_offset.weight", "conv_offset.bias"]
    assert sd["conv_offset.weight"].shape == (2 * 3 * 9, 4, 3, 3)
    assert sd._metadata[""]["version"] == 2


def test_attributes_like_mmcv():
    m = M.ModulatedDeformConv2dPack(8, 4, (3, 2), stride=2, padding=1, dilation=1, groups=2,
                                    deform_groups=2)
    assert (m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation,
            m.groups, m.deform_groups) == (8, 4, (3, 2), (2, 2), (1, 1), (1, 1), 2, 2)
    assert m.transposed is False and m.output_padding == (0,)
    assert m.weight.shape == (4, 4, 3, 2)
    d = M.DeformConv2d(8, 4, 3, im2col_step=16)
    assert d.im2col_step == 16
    assert repr(d).endswith("deform_groups=1,\nbias=False)")


def test_init_and_rng_order_match_mmcv():
    torch.manual_seed(123)
    m = M.ModulatedDeformConv2dPack(6, 4, 3, padding=1, deform_groups=2)
    # replay the RNG draws mmcv's constructor makes: weight.uniform_, nn.Conv2d's own init,
    # then init_weights() again (second uniform_), conv_offset zeroed
    torch.manual_seed(123)
    stdv = 1.0 / math.sqrt(6 * 9)
    torch.empty(4, 6, 3, 3).uniform_(-stdv, stdv)
    nn.Conv2d(6, 2 * 3 * 9, 3, padding=1)
    w2 = torch.empty(4, 6, 3, 3).uniform_(-stdv, stdv)
    assert torch.equal(m.weight.data, w2)
    assert torch.count_nonzero(m.bias) == 0
    assert torch.count_nonzero(m.conv_offset.weight) == 0
    assert torch.count_nonzero(m.conv_offset.bias) == 0

    torch.manual_seed(7)
    d = M.DeformConv2dPack(6, 4, 3)
    torch.manual_seed(7)
    w = torch.empty(4, 6, 3, 3)
    nn.init.kaiming_uniform_(w, nonlinearity="relu")
    assert torch.equal(d.weight.data, w)
    assert torch.count_nonzero(d.conv_offset.weight) == 0


def test_assertions_and_messages():
    with pytest.raises(AssertionError, match=r"bias=True is not supported in DeformConv2d\."):
        M.DeformConv2d(4, 2, 3, bias=True)
    with pytest.raises(AssertionError, match="in_channels 5 cannot be divisible by groups 2"):
        M.DeformConv2d(5, 2, 3, groups=2)
    with pytest.raises(AssertionError, match="out_channels 3 cannot be divisible by groups 2"):
        M.DeformConv2d(4, 3, 3, groups=2)
    m = M.DeformConv2dPack(4, 2, 3, padding=1, im2col_step=2)
    with pytest.raises(AssertionError, match="batch size must be divisible by im2col_step"):
        m(torch.randn(3, 4, 5, 5))
    assert m(torch.randn(4, 4, 5, 5)).shape == (4, 2, 5, 5)
    with pytest.raises(ValueError, match="Expected 4D tensor as input, got 3D tensor instead."):
        M.modulated_deform_conv2d(torch.randn(4, 5, 5), torch.zeros(1, 18, 5, 5),
                                  torch.ones(1, 9, 5, 5), torch.randn(2, 4, 3, 3))
    with pytest.raises(ValueError, match=r"convolution input is too small \(output would be 1x2x0x0\)"):
        M.deform_conv2d(torch.randn(1, 4, 2, 2), torch.zeros(1, 18, 1, 1), torch.randn(2, 4, 3, 3))


def test_deformable_groups_legacy_keyword():
    with pytest.warns(DeprecationWarning, match="deformable_groups"):
        m = M.ModulatedDeformConv2dPack(4, 2, 3, deformable_groups=2)
    assert m.deform_groups == 2 and m.conv_offset.out_channels == 54
    with pytest.warns(DeprecationWarning):
        d = M.DeformConv2d(4, 2, 3, deformable_groups=4)
    assert d.deform_groups == 4
    with pytest.raises(AssertionError):
        M.DeformConv2d(4, 2, 3, deformable_groups=2, deform_groups=2)


@pytest.mark.parametrize("cls,what", [(M.DeformConv2dPack, "DeformConv2dPack"),
                                      (M.ModulatedDeformConv2dPack, "ModulatedDeformConv2dPack")])
def test_old_checkpoint_keys_migrate(cls, what):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv2 = cls(4, 2, 3, padding=1)

    src = Net()
    with torch.no_grad():
        src.conv2.conv_offset.weight.normal_()
        src.conv2.conv_offset.bias.normal_()
    sd = src.state_dict()
    # a version-1 checkpoint: offsets stored as "conv2_offset.*" beside "conv2.*", no version
    old = {}
    for k, v in sd.items():
        old[k.replace("conv2.conv_offset.", "conv2_offset.")] = v.clone()
    # torch >= 2 hands each child only the keys under its own prefix, so (for mmcv's classes as
    # for these) the migration is reached through _load_from_state_dict with the full dict, as
    # older torch called it
    dst = Net()
    missing, unexpected, errors = [], [], []
    dst.conv2._load_from_state_dict(old, "conv2.", {}, True, missing, unexpected, errors)
    assert not missing and not errors
    assert "conv2_offset.weight" not in old and "conv2_offset.bias" not in old
    assert torch.equal(old["conv2.conv_offset.weight"], src.conv2.conv_offset.weight)
    assert torch.equal(old["conv2.conv_offset.bias"], src.conv2.conv_offset.bias)
    # the migrated dict now loads strictly
    dst.load_state_dict(old, strict=True)
    assert torch.equal(dst.conv2.conv_offset.weight, src.conv2.conv_offset.weight)
    # and a current checkpoint loads unchanged
    dst2 = Net()
    dst2.load_state_dict(sd, strict=True)
    assert torch.equal(dst2.conv2.weight, src.conv2.weight)


def test_modules_compute_the_functional_ops():
    torch.manual_seed(0)
    m = M.ModulatedDeformConv2dPack(4, 3, 3, padding=1, deform_groups=2).double()
    with torch.no_grad():
        m.conv_offset.weight.normal_(0, 0.5)
    x = torch.randn(2, 4, 6, 5, dtype=torch.float64)
    out = m.conv_offset(x)
    o1, o2, mask = torch.chunk(out, 3, dim=1)
    want = ops.modulated_deform_conv2d(x, torch.cat((o1, o2), 1), torch.sigmoid(mask), m.weight,
                                       m.bias, 1, 1, 1, 1, 2)
    assert torch.equal(m(x), want)


def test_deform_conv2d_pads_inputs_smaller_than_the_kernel():
    torch.manual_seed(0)
    m = M.DeformConv2d(2, 3, 3, padding=1).double()
    x = torch.randn(1, 2, 2, 2, dtype=torch.float64)
    off = torch.randn(1, 18, 2, 2, dtype=torch.float64)
    out = m(x, off)
    # mmcv pads input and offset right/bottom up to the kernel size, then crops the output
    F = torch.nn.functional
    want = ops.deform_conv2d(F.pad(x, (0, 1, 0, 1)), F.pad(off, (0, 1, 0, 1)), m.weight, 1, 1)
    assert out.shape == (1, 3, 2, 2)
    assert torch.equal(out, want[:, :, :2, :2])


def test_subclass_like_e2fgvi():
    class SecondOrderDeformableAlignment(M.ModulatedDeformConv2d):
        def __init__(self, *args, **kwargs):
            self.max_residue_magnitude = kwargs.pop("max_residue_magnitude", 10)
            super().__init__(*args, **kwargs)
            self.conv_offset = nn.Sequential(
                nn.Conv2d(3 * self.out_channels + 4, self.out_channels, 3, 1, 1),
                nn.LeakyReLU(0.1, inplace=True),
                nn.Conv2d(self.out_channels, 27 * self.deform_groups, 3, 1, 1))
            nn.init.constant_(self.conv_offset[-1].weight, 0)
            nn.init.constant_(self.conv_offset[-1].bias, 0)

        def forward(self, x, extra_feat, flow_1, flow_2):
            out = self.conv_offset(torch.cat([extra_feat, flow_1, flow_2], dim=1))
            o1, o2, mask = torch.chunk(out, 3, dim=1)
            offset = self.max_residue_magnitude * torch.tanh(torch.cat((o1, o2), dim=1))
            offset_1, offset_2 = torch.chunk(offset, 2, dim=1)
            offset_1 = offset_1 + flow_1.flip(1).repeat(1, offset_1.size(1) // 2, 1, 1)
            offset_2 = offset_2 + flow_2.flip(1).repeat(1, offset_2.size(1) // 2, 1, 1)
            offset = torch.cat([offset_1, offset_2], dim=1)
            return M.modulated_deform_conv2d(x, offset, torch.sigmoid(mask), self.weight,
                                             self.bias, self.stride, self.padding,
                                             self.dilation, self.groups, self.deform_groups)

    layer = SecondOrderDeformableAlignment(32, 16, 3, padding=1, deform_groups=4,
                                           max_residue_magnitude=5)
    x = torch.randn(1, 32, 6, 7, requires_grad=True)
    out = layer(x, torch.randn(1, 48, 6, 7), torch.randn(1, 2, 6, 7), torch.randn(1, 2, 6, 7))
    out.sum().backward()
    assert out.shape == (1, 16, 6, 7)
    assert layer.conv_offset[-1].weight.grad.abs().sum() > 0
    assert sorted(layer.state_dict()) == sorted(
        ["weight", "bias", "conv_offset.0.weight", "conv_offset.0.bias", "conv_offset.2.weight",
         "conv_offset.2.bias"])
