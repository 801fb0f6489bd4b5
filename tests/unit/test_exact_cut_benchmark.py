"""The exact cut of `benchmarks/exact_cut.py`: with every fast score within eps, fp32's top k, always."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st


@pytest.fixture(scope="module")
def exact_cut(benchmark_script):
    return benchmark_script("exact_cut").exact_cut


def top(scores, k: int) -> set[int]:
    return set(sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k])


@settings(max_examples=300, deadline=None)
@given(
    exact=st.lists(st.floats(-10, 10, allow_nan=False), min_size=1, max_size=30, unique=True),
    k=st.integers(1, 5),
    eps=st.floats(0.0, 3.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_in_doubt_rescored_gives_the_exact_top_k(
    exact_cut, exact: list[float], k: int, eps: float, seed: int
) -> None:
    noise = np.random.default_rng(seed).uniform(-eps, eps, len(exact)) * 0.999
    fast = (np.asarray(exact) + noise).tolist()
    sure_in, doubt = exact_cut(fast, k, eps)
    assert not set(sure_in) & set(doubt)
    assert len(sure_in) <= k
    chosen = sure_in + sorted(doubt, key=lambda i: -exact[i])[: k - len(sure_in)]
    assert set(chosen) == top(exact, k)
    # What it leaves out is surely out: at least k chunks surely above each.
    for i in set(range(len(exact))) - set(sure_in) - set(doubt):
        assert sum(fast[j] - eps > fast[i] + eps for j in range(len(exact))) >= k


def test_no_doubt_when_eps_is_zero_and_a_wide_band_rescores_all(exact_cut) -> None:
    scores = [3.0, 1.0, 2.0, 0.5]
    assert exact_cut(scores, 2, 0.0) == ([0, 2], [])
    assert sorted(exact_cut(scores, 2, 10.0)[1]) == [0, 1, 2, 3]
