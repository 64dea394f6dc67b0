"""The torchbearer Trial: step-by-step equality with a plain torch loop, projection, the regret metric."""

import functools

import numpy as np
import pytest
import torch

from amsgrad_repro.synthetic.problems import Online, Stochastic
from amsgrad_repro.synthetic.trial import build_trial


@pytest.mark.parametrize("setting", [Online, Stochastic])
@pytest.mark.parametrize("amsgrad", [False, True])
def test_trial_equals_plain_loop_every_step(setting, amsgrad, plain_loop, trial_trajectory):
    steps = 2500
    make = functools.partial(torch.optim.Adam, lr=1e-2, betas=(0.9, 0.99), amsgrad=amsgrad)
    x_trial, avg_trial = trial_trajectory(setting(), make, steps)
    x_ref, avg_ref = plain_loop(setting(), make, steps)
    assert len(x_trial) == steps
    np.testing.assert_array_equal(x_trial, x_ref)  # exact float32 equality at every step
    np.testing.assert_array_equal(avg_trial, avg_ref)
    assert np.unique(x_trial).size > 100  # the iterate actually moves


def test_iterate_stays_in_bounds_every_step(trial_trajectory):
    # SGD at lr 0.01 is thrown to −1 by every 1010 step and climbs to +1 in between: both ends are hit
    x, _ = trial_trajectory(Online(), functools.partial(torch.optim.SGD, lr=0.01), 1000)
    assert x.min() >= -1.0 and x.max() <= 1.0
    assert (x == -1.0).sum() >= 9 and (x == 1.0).sum() >= 9
    x, _ = trial_trajectory(Stochastic(seed=2), functools.partial(torch.optim.Adam, lr=0.5), 2000)
    assert x.min() >= -1.0 and x.max() <= 1.0 and (np.abs(x) == 1.0).any()


def test_average_regret_by_hand(trial_trajectory):
    # SGD, lr 0.01, online problem, x_1 = 0, x* = −1; worked by hand:
    # t=1: c=1010, x_1=0    → regret 1010·(0+1) = 1010;  x_2 = clamp(0 − 10.1) = −1
    # t=2: c=−10,  x_2=−1   → regret 0;                  x_3 = −1 + 0.1 = −0.9
    # t=3: c=−10,  x_3=−0.9 → regret −10·0.1 = −1;       x_4 = −0.8
    # t=4: c=−10,  x_4=−0.8 → regret −10·0.2 = −2;       x_5 = −0.7
    x, avg = trial_trajectory(Online(), functools.partial(torch.optim.SGD, lr=0.01), 4)
    np.testing.assert_allclose(x, [-1.0, -0.9, -0.8, -0.7], rtol=1e-6)
    np.testing.assert_allclose(avg, [1010 / 1, 1010 / 2, 1009 / 3, 1007 / 4], rtol=1e-6)


def test_any_torch_optimizer_runs_through_the_trial(plain_loop, trial_trajectory):
    make = functools.partial(torch.optim.RMSprop, lr=1e-3)
    x_trial, _ = trial_trajectory(Online(), make, 500)
    x_ref, _ = plain_loop(Online(), make, 500)
    np.testing.assert_array_equal(x_trial, x_ref)


def test_projection_hook_is_removed_at_the_end():
    problem = Online()
    opt = torch.optim.SGD(problem.parameters(), lr=10.0)
    build_trial(problem, opt, 3).run()
    assert problem.x.item() == 1.0  # −1 after t=1, then +99 and +101 clamped to +1
    opt.zero_grad()
    problem(2).backward()  # slope −10: the step goes to +101 unless a stale hook clamps it
    opt.step()
    assert problem.x.item() == pytest.approx(101.0)
