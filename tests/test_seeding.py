"""skal.utils.seeding.resolve_seed: the one converter of ``random_state`` to a seed, and
the strategies and campaign helpers that use it."""

import numpy as np
import pytest

from skal import SkalTypeError, SkalValueError
from skal.campaign.engine import initial_indices
from skal.query import random_sampling
from skal.query.base import multi_argmax
from skal.utils.seeding import resolve_seed


def test_ints_and_none():
    assert resolve_seed(None) is None
    assert resolve_seed(7) == 7
    assert resolve_seed(np.int64(7), offset=3) == 10


@pytest.mark.parametrize("make", [np.random.RandomState, np.random.default_rng])
def test_numpy_generators_draw_a_seed(make):
    # a generator is advanced: two draws differ, and equal generators give equal seeds
    a, b = make(0), make(0)
    first = resolve_seed(a)
    assert first == resolve_seed(b)
    assert 0 <= first < 2**31 - 1
    assert resolve_seed(a) != first


@pytest.mark.parametrize("bad, error, match", [
    (-1, SkalValueError, "non-negative"),
    ("3", SkalTypeError, "numpy Generator"),
    (1.5, SkalTypeError, "numpy Generator"),
    (True, SkalTypeError, "numpy Generator"),
])
def test_bad_random_states_are_rejected(bad, error, match):
    with pytest.raises(error, match=match):
        resolve_seed(bad)


@pytest.mark.parametrize("use", [
    lambda rs: random_sampling(None, np.zeros((30, 2)), 5, random_state=rs)[0],
    lambda rs: multi_argmax(np.zeros(30), 5, rs)[0],
    lambda rs: initial_indices(np.arange(30) % 3, 6, rs),
])
def test_every_user_takes_all_kinds(use):
    """ints, RandomState and Generator seed the same way everywhere; bad values raise
    skal's errors rather than numpy's."""
    np.testing.assert_array_equal(use(3), use(3))
    np.testing.assert_array_equal(use(np.random.RandomState(1)), use(np.random.RandomState(1)))
    np.testing.assert_array_equal(use(np.random.default_rng(1)), use(np.random.default_rng(1)))
    with pytest.raises(SkalValueError):
        use(-2)
    with pytest.raises(SkalTypeError):
        use("seed")
