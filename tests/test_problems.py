"""The problems and their streams: 1-based t, derived x*, a reproducible, window-independent stochastic stream."""

import numpy as np
import pytest
import torch

from amsgrad_repro.synthetic.problems import BernoulliStream, Bounds, Online, PeriodicStream, Stochastic


def test_first_step_is_the_1010_step():
    problem = Online()
    assert problem.coef(1) == 1010.0
    assert problem.coef(2) == -10.0
    rare = np.flatnonzero(PeriodicStream(101).rare(1, 1000)) + 1
    assert rare.tolist() == [1, 102, 203, 304, 405, 506, 607, 708, 809, 910]
    with torch.no_grad():
        problem.x.fill_(0.5)
    assert problem(1).item() == pytest.approx(505.0)
    assert problem(2).item() == pytest.approx(-5.0)


def test_x_star_is_derived_from_the_constants():
    assert Online().x_star == -1.0  # average slope (1010 − 100·10)/101 > 0
    assert Stochastic().x_star == -1.0  # expected slope 0.01·1010 − 0.99·10 = 0.2 > 0
    assert Online().mean_slope == pytest.approx(10 / 101)
    assert Stochastic().mean_slope == pytest.approx(0.2)
    # a period long enough that the common slope wins: (1010 − 200·10)/201 < 0, so x* is the upper bound
    assert Online(period=201).x_star == 1.0
    assert Stochastic(p=0.005).x_star == 1.0
    assert Online(bounds=Bounds(-2.0, 3.0)).x_star == -2.0


def test_t_is_one_based():
    with pytest.raises(ValueError):
        PeriodicStream().rare(0, 5)
    with pytest.raises(ValueError):
        BernoulliStream().rare(0, 5)


@pytest.mark.parametrize("seed", [0, 7])
def test_stream_is_reproducible_and_window_independent(seed):
    n = 300_000
    whole = BernoulliStream(0.01, seed).rare(1, n)
    again = BernoulliStream(0.01, seed).rare(1, n)
    assert np.array_equal(whole, again)
    rng = np.random.default_rng(123)
    stream = BernoulliStream(0.01, seed)
    pieces, t = [], 1
    while t <= n:
        size = int(rng.integers(1, 50_000))
        size = min(size, n - t + 1)
        pieces.append(stream.rare(t, size))
        t += size
    assert np.array_equal(np.concatenate(pieces), whole)
    # a late window read first, cold, is the same too
    assert np.array_equal(BernoulliStream(0.01, seed).rare(200_001, 1234), whole[200_000:201_234])


def test_seeds_differ_and_the_problem_reads_the_stream():
    a = BernoulliStream(0.01, 0).rare(1, 100_000)
    b = BernoulliStream(0.01, 1).rare(1, 100_000)
    assert not np.array_equal(a, b)
    problem = Stochastic(seed=1)
    coefs = np.array([problem.coef(t) for t in range(1, 10_001)])
    assert np.array_equal(coefs, np.where(b[:10_000], 1010.0, -10.0))
    assert np.array_equal(problem.coefs(1, 10_000), coefs)


@pytest.mark.parametrize("p", [0.01, 0.3])
def test_rare_frequency_matches_p(p):
    n = 1_000_000
    count = int(BernoulliStream(p, 11).rare(1, n).sum())
    sd = (n * p * (1 - p)) ** 0.5
    assert abs(count - n * p) < 5 * sd


def test_bad_constants_raise():
    with pytest.raises(ValueError):
        PeriodicStream(1)
    with pytest.raises(ValueError):
        BernoulliStream(1.5)
    with pytest.raises(ValueError):
        BernoulliStream(0.01, -1)
    with pytest.raises(ValueError):
        Bounds(1.0, -1.0)
    with pytest.raises(ValueError):
        Online(x0=2.0)
    with pytest.raises(ValueError):
        Online(rare_coef=float("nan"))
