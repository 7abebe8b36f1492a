import torch
import torch.nn as nn

from networks.gca_matting.spectral_norm import SpectralNorm, l2normalize


def reference_sigma(weight, u, v):
    w = weight.view(weight.shape[0], -1)
    return u.dot(w.mv(v))


def test_parameter_layout_and_order():
    sn = SpectralNorm(nn.Conv2d(4, 8, 3, bias=False))
    assert list(dict(sn.named_parameters())) == ["module.weight_u", "module.weight_v", "module.weight_bar"]
    assert sn.module.weight_u.shape == (8,) and sn.module.weight_v.shape == (36,)
    assert not sn.module.weight_u.requires_grad and not sn.module.weight_v.requires_grad
    assert sn.module.weight_bar.requires_grad


def test_conv_transpose_uses_dim_0_which_is_in_channels():
    sn = SpectralNorm(nn.ConvTranspose2d(6, 3, 4, 2, 1, bias=False))
    assert sn.module.weight_bar.shape == (6, 3, 4, 4)
    assert sn.module.weight_u.shape == (6,) and sn.module.weight_v.shape == (48,)


def test_train_mode_runs_one_power_iteration_and_divides_by_sigma():
    torch.manual_seed(0)
    sn = SpectralNorm(nn.Conv2d(3, 5, 3, padding=1, bias=False)).train()
    w = sn.module.weight_bar.detach().clone()
    u0 = sn.module.weight_u.detach().clone()
    w_mat = w.view(5, -1)
    v1 = l2normalize(w_mat.t().mv(u0))
    u1 = l2normalize(w_mat.mv(v1))
    x = torch.randn(2, 3, 8, 8)
    out = sn(x)
    assert torch.allclose(sn.module.weight_v, v1) and torch.allclose(sn.module.weight_u, u1)
    expected = nn.functional.conv2d(x, w / reference_sigma(w, u1, v1), padding=1)
    assert torch.allclose(out, expected, atol=1e-6)


def test_eval_mode_keeps_u_v_and_uses_them():
    torch.manual_seed(1)
    sn = SpectralNorm(nn.ConvTranspose2d(4, 2, 4, 2, 1, bias=False)).eval()
    u, v = sn.module.weight_u.detach().clone(), sn.module.weight_v.detach().clone()
    x = torch.randn(1, 4, 5, 5)
    out = sn(x)
    sn(x)
    assert torch.equal(sn.module.weight_u, u) and torch.equal(sn.module.weight_v, v)
    w = sn.module.weight_bar.detach()
    expected = nn.functional.conv_transpose2d(x, w / reference_sigma(w, u, v), stride=2, padding=1)
    assert torch.allclose(out, expected, atol=1e-6)


def test_gradient_flows_to_weight_bar_through_sigma():
    torch.manual_seed(2)
    sn = SpectralNorm(nn.Conv2d(2, 3, 1, bias=False)).train()
    sn(torch.randn(1, 2, 4, 4)).sum().backward()
    assert sn.module.weight_bar.grad is not None
    assert sn.module.weight_u.grad is None
    # two training steps in a row must not trip autograd's in-place checks
    sn(torch.randn(1, 2, 4, 4)).sum().backward()
