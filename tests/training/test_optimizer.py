"""The optimizer: the fused Adam that training uses takes the same steps as Adam written out by
hand (Kingma & Ba 2015, bias-corrected moments), and a run saved with it resumes with it."""

import torch

from vitae import models
from vitae.training.trainer import make_optimizer


def adam_by_hand(param, grads, lr, betas=(0.9, 0.999), eps=1e-8):
    """Adam's update written out in float64 for a sequence of gradients."""
    p, m, v = param.double().clone(), torch.zeros_like(param, dtype=torch.float64), torch.zeros_like(param, dtype=torch.float64)
    for t, g in enumerate(grads, 1):
        g = g.double()
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        m_hat, v_hat = m / (1 - betas[0] ** t), v / (1 - betas[1] ** t)
        p = p - lr * m_hat / (v_hat.sqrt() + eps)
    return p


def test_training_uses_fused_adam_on_cpu():
    model = models.create("vae", (1, 28, 28))
    optimizer = make_optimizer(model, lr=1e-3)
    assert optimizer.param_groups[0]["fused"] is True


def test_fused_adam_matches_adam_by_hand():
    torch.manual_seed(0)
    layer = torch.nn.Linear(7, 5)
    start = layer.weight.detach().clone()
    optimizer = make_optimizer(layer, lr=1e-2)
    grads = [torch.randn(5, 7) for _ in range(6)]
    for g in grads:
        optimizer.zero_grad()
        layer.weight.grad = g.clone()
        layer.bias.grad = torch.zeros(5)
        optimizer.step()
    expected = adam_by_hand(start, grads, lr=1e-2)
    torch.testing.assert_close(layer.weight.detach().double(), expected, rtol=0, atol=1e-6)


def test_a_saved_optimizer_resumes_with_its_own_implementation():
    model = models.create("vae", (1, 28, 28))
    saved = torch.optim.Adam(model.parameters(), lr=1e-3)  # as saved by runs before the fused default
    model(torch.rand(4, 1, 28, 28)).loss.backward()
    saved.step()
    resumed = make_optimizer(model, lr=1e-3)
    resumed.load_state_dict(saved.state_dict())
    assert not resumed.param_groups[0]["fused"]
