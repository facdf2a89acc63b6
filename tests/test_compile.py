"""The backbone under ``torch.compile`` with every kernel that trains on CPU: inference equals
eager, and a training step gives eager's gradients and updates the weights."""
import pytest
import torch

from rmt_mm.models import RMT

from helpers.archs import tiny_arch

#: One block per stage keeps compilation short; the tiny arch still has both MaSA forms.
ARCH = dict(tiny_arch(RMT), depths=[1, 1, 1, 1])

pytestmark = pytest.mark.slow  # compiling takes tens of seconds per kernel on two cores


def _grads(model):
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize('impl', ['reference', 'sdpa', 'blocked'])
def test_compiled_backbone_matches_eager(impl):
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = RMT(ARCH, attn_impl=impl, drop_path_rate=0.0).eval()
    x = torch.randn(1, 3, 33, 47)
    with torch.no_grad():
        eager = model(x)
        compiled = torch.compile(model, dynamic=False)(x)
    assert len(compiled) == len(eager) == 4
    for out, ref in zip(compiled, eager):
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)

    model.train()
    sum(o.square().mean() for o in model(x)).backward()
    eager_grads = _grads(model)
    model.zero_grad(set_to_none=True)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    sum(o.square().mean() for o in torch.compile(model, dynamic=False)(x)).backward()
    compiled_grads = _grads(model)
    assert len(compiled_grads) == len(eager_grads) == len(before)
    for grad, ref in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(grad, ref, rtol=1e-3, atol=1e-5)
    optimizer.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(p, b) for p, b in zip(model.parameters(), before))
