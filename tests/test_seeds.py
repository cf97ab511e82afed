"""Seeds derived in one place (mfsg.seeds): reproducible, distinct per use, valid for every consumer."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mfsg.seeds import derive

paths = st.lists(st.one_of(st.integers(0, 2**31), st.sampled_from(["rollout", "update", "eval", "heldout"])),
                 max_size=3)


@given(st.integers(0, 2**32), paths)
def test_equal_paths_give_equal_seeds_in_range(root, path):
    s = derive(root, *path)
    assert s == derive(root, *path)
    assert 0 <= s < 2**63
    torch.Generator().manual_seed(s)
    np.random.default_rng(s)


def test_distinct_uses_iterations_and_roots_give_distinct_seeds():
    seeds = {derive(r, use, it) for r in range(3) for use in ("rollout", "update") for it in range(200)}
    assert len(seeds) == 3 * 2 * 200


def test_seed_is_the_spawned_child():
    child = np.random.SeedSequence(7).spawn(3)[2]
    assert derive(7, 2) == int(child.generate_state(1, np.uint64)[0] >> np.uint64(1))


@pytest.mark.parametrize("bad", [-1, 1.5, None, True])
def test_bad_path_part_names_the_allowed_values(bad):
    with pytest.raises(ValueError, match="non-negative int or a str"):
        derive(0, bad)
