"""The slab weight gradient of the depthwise conv is the plain conv's, for every layout."""
import pytest
import torch
import torch.nn.functional as F

from rmt_mm.models.depthwise import depthwise_conv2d
from rmt_mm.models.rmt import RMT, DWConv2d


def inputs(shape, kernel, channels_last, dtype=torch.float64, bias=True):
    torch.manual_seed(0)
    x = torch.randn(*shape, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(shape[1], 1, kernel, kernel, dtype=dtype)
    b = torch.randn(shape[1], dtype=dtype) if bias else None
    return [t.requires_grad_() if t is not None else None for t in (x, weight, b)]


@pytest.mark.parametrize('kernel', [5, 7, 9])
@pytest.mark.parametrize('channels_last', [True, False], ids=['channels_last', 'nchw'])
@pytest.mark.parametrize('shape', [(2, 3, 7, 9), (1, 4, 5, 3), (1, 2, 1, 11)])
def test_gradcheck(kernel, channels_last, shape):
    x, weight, bias = inputs(shape, kernel, channels_last)
    assert torch.autograd.gradcheck(depthwise_conv2d, (x, weight, bias))


def _rel_err(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


@pytest.mark.parametrize('bias', [True, False])
def test_matches_plain_conv_in_float32(bias):
    """Output and input/bias gradients are the plain op's (to 1e-6). The weight gradient sums
    in another order than oneDNN's, so the two float32 weight gradients carry different
    rounding: each entry sums N = 2 * 23 * 37 products, whose float32 rounding is about
    sqrt(N) * 2^-24 = 2.5e-6 of the largest entry (the slab one measured 0.3-1.3e-6 on AVX2 and
    AVX-512 machines, oneDNN's 0.3e-6); a wrong slab is off by O(1)."""
    x, weight, b = inputs((2, 16, 23, 37), 5, True, torch.float32, bias)
    grad = torch.randn(2, 16, 23, 37)
    results = []
    for fn, dtype in ((depthwise_conv2d, torch.float32),
                      (lambda x, w, b: F.conv2d(x, w, b, 1, 2, 1, 16), torch.float32),
                      (lambda x, w, b: F.conv2d(x, w, b, 1, 2, 1, 16), torch.float64)):
        args = [t.detach().to(dtype).requires_grad_() if t is not None else None
                for t in (x, weight, b)]
        out = fn(*args)
        out.backward(grad.to(dtype))
        results.append({'out': out, 'grad_x': args[0].grad, 'grad_w': args[1].grad,
                        'grad_b': args[2].grad if bias else None})
    mine, plain, truth = results
    for name in ('out', 'grad_x', 'grad_b'):
        if mine[name] is not None:
            assert _rel_err(mine[name], plain[name]) <= 1e-6, name
    for name, value in mine.items():
        if value is not None:
            assert _rel_err(value, truth[name]) <= (2.5e-6 if name == 'grad_w' else 1e-6), name


def test_frozen_weight_skips_its_gradient():
    x, weight, bias = inputs((1, 3, 6, 8), 5, True)
    weight.requires_grad_(False)
    depthwise_conv2d(x, weight, bias).sum().backward()
    assert weight.grad is None and x.grad is not None and bias.grad is not None


def test_fast_model_routes_lepe_only_through_it():
    """Only the fast path's 5x5 LePE uses the slab gradient; the reference stays upstream's."""
    for impl, slab_kernels in (('blocked', {(5, 5)}), ('reference', set())):
        convs = [m for m in RMT(arch='tiny', attn_impl=impl).modules() if isinstance(m, DWConv2d)]
        assert {m.conv.kernel_size for m in convs} == {(3, 3), (5, 5)}
        assert {m.conv.kernel_size for m in convs if m.slab_weight_grad} == slab_kernels


def test_slab_route_is_cpu_only():
    """The slab gradient was measured on oneDNN only; other devices keep the plain op."""
    for device, slab in (('cpu', True), ('meta', False)):
        x = torch.randn(1, 4, 6, 8, device=device, requires_grad=True)
        weight = torch.randn(4, 1, 5, 5, device=device, requires_grad=True)
        name = type(depthwise_conv2d(x, weight).grad_fn).__name__
        assert ('DepthwiseConv' in name) is slab, (device, name)
