"""Game-layer properties under churn (model §3, §8).

- Relabeling followers changes nothing: the exact game of a scenario whose UEs have different
  arrival probabilities, rebuilt with the UEs in another order, has the same leader utility and
  follower gradient (parameters mapped by observation code, since the tables are keyed by what a
  player sees, never by slot) and permuted per-follower utilities.
- A churn distribution P_N with all its mass on one N is the fixed-N game (exact, analytic
  one-TTI and quadratic games): utilities, g_F, the welfare gradient and the leader's gradients.
  A follower count that leaves the distribution (its weight mixed down to 0) drops out the same way.
- The exact game's expected counters conserve packets under every P_N: with rewards that report
  counters' increases per TTI and γ = 1, the exact leader and follower utilities are those counters'
  expectations at the end of the episode; E[generated] = E[dropped_overflow] + E[in_buffer] + E[deleted] +
  E[lost_on_departure] and E[delivered] ≤ E[generated].
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import mfsg.game.exact as exact
from mfsg.config import ChurnConfig, EnvConfig, UtilityConfig
from mfsg.env.reference import ReferenceEnv
from mfsg.game.base import DTYPE, ChurnDist, Game
from mfsg.game.closed_form import random_quadratic
from mfsg.game.exact import ExactMacGame
from mfsg.game.mac_stage import MacStageGame

RTOL, ATOL = 1e-10, 1e-12
SUPPORT = (1, 2)  # numbers of followers of the small exact instances


def _cfg(p_arrival, n: int, *, t: int = 2, tbler: float = 0.2, beta_fair: float = 0.5, gamma: float = 0.9) -> EnvConfig:
    return EnvConfig(n_rbg=1, buffer=1, horizon=t, p_arrival=p_arrival, ucm_vocab=1, dcm_vocab=2, tbler=tbler,
                     churn=ChurnConfig(kind="fixed", n=n),
                     utility=UtilityConfig(kappa_buf=0.1, c_tx=0.05, beta_fair=beta_fair, gamma=gamma))


def params(dim: int) -> st.SearchStrategy[torch.Tensor]:
    return st.lists(st.floats(-3.0, 3.0), min_size=dim, max_size=dim).map(lambda v: torch.tensor(v, dtype=DTYPE))


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=RTOL, atol=ATOL)


# -- relabeling followers --------------------------------------------------------------------------


def embed_index(big, small) -> torch.Tensor:
    """Position in ``big``'s parameters of each of ``small``'s: tables are matched row by observation code
    (``small``'s codes ⊆ ``big``'s), never by slot or by the order the enumeration met them."""
    code_of = {r: c for c, r in big.codes.items()}
    pos = {(code_of[r], a): i for i, (r, a) in enumerate(zip(big.free_rows.tolist(), big.free_cols.tolist()))}
    code_small = {r: c for c, r in small.codes.items()}
    return torch.tensor([pos[(code_small[r], a)] for r, a in zip(small.free_rows.tolist(), small.free_cols.tolist())])


def relayout(src, dst, theta: torch.Tensor) -> torch.Tensor:
    """Parameters of table ``src`` in the layout of ``dst`` (both reach the same observation rows)."""
    assert set(src.codes) == set(dst.codes), "relabeled games reach different observation rows"
    return theta[embed_index(src, dst)]


P_ARRIVAL = (0.9, 0.3, 0.6)


@pytest.fixture(scope="module")
def relabeled_games() -> dict[tuple[int, ...], ExactMacGame]:
    """The exact game of 3 UEs with distinct arrival probabilities, once per order of the UEs."""
    return {perm: ExactMacGame(_cfg(tuple(P_ARRIVAL[i] for i in perm), 3, t=1), ChurnDist.fixed(3))
            for perm in [(0, 1, 2), (2, 0, 1), (1, 0, 2)]}


@settings(max_examples=10)
@given(data=st.data())
def test_relabeling_followers_changes_nothing(relabeled_games, data):
    base = relabeled_games[(0, 1, 2)]
    x, y, z = data.draw(params(base.dim_x)), data.draw(params(base.dim_y)), data.draw(params(base.dim_y))
    j = base.follower_utilities(x, z, y, 3)
    for perm, game in relabeled_games.items():
        pol, pb = game.policies, base.policies
        xp, yp, zp = relayout(pb.leader, pol.leader, x), relayout(pb.follower, pol.follower, y), \
            relayout(pb.follower, pol.follower, z)
        close(game.leader_utility(xp, yp, 3), base.leader_utility(x, y, 3))
        close(game.follower_utilities(xp, zp, yp, 3), j[list(perm)])  # slot i now holds UE perm[i]
        close(game.expected_follower(xp, zp, yp), base.expected_follower(x, z, y))
        g = game.follower_gradient(xp, yp)
        close(g, relayout(pb.follower, pol.follower, base.follower_gradient(x, y)))
        close(game.leader_gradient_x(xp, yp), relayout(pb.leader, pol.leader, base.leader_gradient_x(x, y)))


def test_distinct_arrivals_make_followers_distinguishable(relabeled_games):
    """The relabeling test is not vacuous: with distinct p_a, the followers' utilities differ."""
    base = relabeled_games[(0, 1, 2)]
    x, y = base.initial_point(1)
    j = base.follower_utilities(10 * x, 10 * y, 10 * y, 3)
    assert float(j.max() - j.min()) > 1e-3


# -- all mass on one N is the fixed-N game -----------------------------------------------------------


def point_mass(support: tuple[int, ...], n: int) -> ChurnDist:
    return ChurnDist(support, tuple(float(m == n) for m in support))


def assert_same_game(a: Game, b: Game, x, y, z) -> None:
    """Expected utilities and every gradient the checks use agree."""
    close(b.expected_leader(x, y), a.expected_leader(x, y))
    close(b.expected_follower(x, z, y), a.expected_follower(x, z, y))
    close(b.follower_gradient(x, y), a.follower_gradient(x, y))
    close(b.follower_welfare_gradient(x, y), a.follower_welfare_gradient(x, y))
    close(b.leader_gradient_x(x, y), a.leader_gradient_x(x, y))
    close(b.leader_gradient_y(x, y), a.leader_gradient_y(x, y))


@pytest.fixture(scope="module")
def exact_games() -> dict:
    """Exact games on two TTIs: P_N over {1, 2} with all mass on 2, and fixed(2)."""
    cfg = _cfg(0.6, 2)
    return {"mass": ExactMacGame(cfg, point_mass(SUPPORT, 2)), "fixed": ExactMacGame(cfg, ChurnDist.fixed(2))}


@settings(max_examples=10)
@given(data=st.data())
def test_point_mass_is_the_fixed_n_exact_game(exact_games, data):
    mass, fixed = exact_games["mass"], exact_games["fixed"]
    x, y, z = data.draw(params(mass.dim_x)), data.draw(params(mass.dim_y)), data.draw(params(mass.dim_y))
    # the N = 1 instance of the support reaches rows that N = 2 never does: compare on the fixed game's rows
    lead, follow = embed_index(mass.policies.leader, fixed.policies.leader), \
        embed_index(mass.policies.follower, fixed.policies.follower)
    xf, yf, zf = x[lead], y[follow], z[follow]
    close(fixed.expected_leader(xf, yf), mass.expected_leader(x, y))
    close(fixed.expected_follower(xf, zf, yf), mass.expected_follower(x, z, y))
    close(fixed.follower_gradient(xf, yf), mass.follower_gradient(x, y)[follow])
    close(fixed.follower_welfare_gradient(xf, yf), mass.follower_welfare_gradient(x, y)[follow])
    close(fixed.leader_gradient_x(xf, yf), mass.leader_gradient_x(x, y)[lead])


@settings(max_examples=20)
@given(data=st.data(), n=st.integers(1, 4), other=st.integers(1, 4), weight=st.floats(0.0, 1.0))
def test_point_mass_is_the_fixed_n_analytic_games(data, n, other, weight):
    """The analytic one-TTI MAC game and a quadratic game; a follower count that leaves P_N (its
    weight mixed down) leaves the expectation linear in its weight, the fixed-N game at weight 0."""
    support = (1, 2, 3, 4)
    cfg = EnvConfig(n_rbg=2, p_arrival=0.5, tbler=0.1, churn=ChurnConfig(kind="fixed", n=n))
    games = [(MacStageGame(cfg, point_mass(support, n)), MacStageGame(cfg, ChurnDist.fixed(n))),
             (random_quadratic(2, 3, point_mass(support, n), seed=3), random_quadratic(2, 3, ChurnDist.fixed(n), seed=3))]
    for mass, fixed in games:
        x, y, z = data.draw(params(mass.dim_x)), data.draw(params(mass.dim_y)), data.draw(params(mass.dim_y))
        assert_same_game(mass, fixed, x, y, z)
        leaving = ChurnDist.fixed(n).mixture(ChurnDist.fixed(other), weight)
        want = (1 - weight) * fixed.leader_utility(x, y, n) + weight * mass.leader_utility(x, y, other)
        close(mass.expected_leader(x, y, leaving), want)
        close(mass.expected_leader(x, y, ChurnDist.fixed(n).mixture(ChurnDist.fixed(other), 0.0)),
              fixed.expected_leader(x, y))


# -- expected counters conserve packets ------------------------------------------------------------

# counters reported by one counting game each: (leader reward, every follower's reward)
COUNTED = (("generated", "delivered"), ("dropped_overflow", "in_buffer"), ("deleted", "lost_on_departure"))


def counting_env(lead: str, follow: str) -> type[ReferenceEnv]:
    """A ReferenceEnv whose leader reward is the increase of counter ``lead`` during the TTI (churn and traffic
    included) and every follower's reward that of ``follow``."""

    class Counting(ReferenceEnv):
        def begin_tti(self, draws=None):
            self.before = (getattr(self.c, lead), getattr(self.c, follow))
            return super().begin_tti(draws)

        def end_tti(self, ucm, access):
            r = super().end_tti(ucm, access)
            d_lead, d_follow = getattr(self.c, lead) - self.before[0], getattr(self.c, follow) - self.before[1]
            return dataclasses.replace(r, leader=float(d_lead), follower=np.full(self.S, float(d_follow)))

    return Counting


@pytest.fixture(scope="module")
def counter_games() -> dict[tuple[str, str], ExactMacGame]:
    """Exact games over P_N on {1, 2} with γ = 1: leader utility E[lead counter at the end], every
    follower's utility E[follow counter at the end]."""
    cfg = _cfg(0.7, 1, t=2, tbler=0.3, beta_fair=0.0, gamma=1.0)
    games = {}
    with pytest.MonkeyPatch.context() as mp:
        for pair in COUNTED:
            mp.setattr(exact, "ReferenceEnv", counting_env(*pair))
            games[pair] = ExactMacGame(cfg, ChurnDist.uniform(*SUPPORT))
    return games


def expected_counters(games: dict, x, y, dist: ChurnDist | None = None) -> dict[str, float]:
    out = {}
    for (lead, follow), game in games.items():
        out[lead] = float(game.expected_leader(x, y, dist))
        out[follow] = float(game.expected_follower(x, y, y, dist))
    return out


churn_dists = st.lists(st.floats(0.0, 1.0), min_size=len(SUPPORT), max_size=len(SUPPORT)).filter(
    lambda w: sum(w) > 0.01).map(lambda w: ChurnDist(SUPPORT, tuple(v / sum(w) for v in w)))


@settings(max_examples=25)
@given(data=st.data(), dist=churn_dists)
def test_exact_expected_counters_conserve_packets(counter_games, data, dist):
    g = counter_games[COUNTED[0]]
    assert all(game.dim_x == g.dim_x and game.dim_y == g.dim_y for game in counter_games.values())
    x, y = data.draw(params(g.dim_x)), data.draw(params(g.dim_y))
    e = expected_counters(counter_games, x, y, dist)
    rest = e["dropped_overflow"] + e["in_buffer"] + e["deleted"] + e["lost_on_departure"]
    assert e["generated"] == pytest.approx(rest, rel=RTOL, abs=ATOL), e
    assert e["lost_on_departure"] == 0.0  # the exact game's churn is fixed within an episode (per_episode P_N)
    assert -ATOL <= e["delivered"] <= e["generated"] + ATOL and all(v >= -ATOL for v in e.values())


def test_expected_counters_are_the_env_counters(counter_games):
    """The counting games measure what they claim: E[generated] = Σ_N P(N)·N·T·p_a, and drops do happen."""
    g = counter_games[COUNTED[0]]
    x, y = g.initial_point(0)
    cfg, e = g.cfg, expected_counters(counter_games, x, y)
    want = sum(p * n * cfg.horizon * cfg.p_arrival for n, p in zip(g.churn.support, g.churn.probs, strict=True))
    assert e["generated"] == pytest.approx(want, rel=RTOL)
    assert min(e["dropped_overflow"], e["delivered"], e["in_buffer"], e["deleted"]) > 0.01, e


def test_counting_env_changes_only_the_leader_reward():
    """The counting double leaves the environment itself alone: same trajectory and counters as ReferenceEnv."""
    cfg = _cfg(0.7, 2, t=6)
    plain, counting = ReferenceEnv(cfg, seed=3), counting_env("generated", "deleted")(cfg, seed=3)
    for t in range(cfg.horizon):
        for env in (plain, counting):
            env.begin_tti()
            env.deliver([1, 0])
        access = [(1 if t % 3 else 2) if ue.buffer else 0 for ue in plain.ues]  # TX twice, then DELETE
        rewards = [env.end_tti([0, 0], access) for env in (plain, counting)]
        assert plain.c.as_dict() == counting.c.as_dict() and plain.latencies == counting.latencies
        assert rewards[0].team == rewards[1].team
    assert counting.c.generated > 0 and counting.c.deleted > 0
