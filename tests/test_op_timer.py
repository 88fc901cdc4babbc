"""``timing.OpTimer``: the wall time of every aten operator of a training step, forward, backward
and optimiser, each counted once, without changing what the step computes; and
``timing.best_seconds``, the shortest of several timed calls."""

import time

import pytest
import torch
import torch.nn.functional as F

from vitae.reproduce.timing import OpTimer, best_seconds


def step(weight, bias, x, optimizer):
    loss = F.linear(x, weight, bias).square().sum()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss


def test_the_timer_sees_forward_backward_and_optimiser_and_changes_nothing():
    x = torch.randn(64, 300, dtype=torch.float64)
    results = []
    for timed in (False, True):
        torch.manual_seed(0)
        weight = torch.randn(200, 300, dtype=torch.float64, requires_grad=True)
        bias = torch.zeros(200, dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.Adam([weight, bias], lr=1e-2, fused=True)  # as vitae trains
        timer = OpTimer()
        start = time.perf_counter()
        if timed:
            with timer:
                loss = step(weight, bias, x, optimizer)
        else:
            loss = step(weight, bias, x, optimizer)
        wall = time.perf_counter() - start
        results.append((loss.detach(), weight.detach().clone(), bias.detach().clone()))
    assert all(torch.equal(a, b) for a, b in zip(*results))  # the same step, bit for bit
    names = set(timer.seconds)
    assert "addmm" in names  # the forward's product ...
    assert "mm" in names  # ... the backward's (the weight's gradient) ...
    assert any("adam" in name for name in names)  # ... and the optimiser's update
    assert "linear" not in names  # composite operators arrive as what they run
    assert all(seconds >= 0 for seconds in timer.seconds.values())
    assert sum(timer.seconds.values()) <= wall  # each operator counted once, inside the step's time


def test_best_seconds_takes_the_shortest_call_and_names_a_bad_count():
    calls = []
    durations = iter([0.0, 0.03, 0.01, 0.02])  # the first call is untimed

    def f():
        calls.append(1)
        time.sleep(next(durations))

    assert 0.01 <= best_seconds(f, repeats=3) < 0.02
    assert len(calls) == 4
    with pytest.raises(ValueError, match="repeats must be a positive integer, got 0"):
        best_seconds(f, repeats=0)
