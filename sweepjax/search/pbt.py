"""Population-based training (Jaderberg et al. 2017) with truncation selection, as Ray Tune's
`PopulationBasedTraining` does it.

Every `ready` steps of its own, a trial is *ready*. Among the trials ready in one `decide`, the
bottom `quantile` (by the ranking metric: `floor(n * quantile)` of the n finite values, at least
one when n >= 2, where Ray rounds up; ties by trial id; and every trial whose value is not
finite) each copy a member drawn from the top `quantile` (*exploit*: an `Exploit` action) and
then *explore*: each searched hyperparameter is resampled from its distribution with
`resample_probability`, else the source's value is multiplied by a factor from `perturb` (an
`IntUniform` rounds and moves at least one step; a `Choice` moves to a neighbouring value or
stays) and clipped to the bounds. The draws of the n-th exploit come from
`numpy.random.default_rng([seed, n])`, so a restored PBT draws exactly as the original.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sweepjax.search.checks import check, check_direction, check_int, finite, is_int
from sweepjax.search.distributions import Choice, IntUniform, is_distribution, is_number
from sweepjax.search.protocol import Exploit, Observation
from sweepjax.search.stateful import Stateful, builtin


def ranked(pairs: Sequence[Sequence], direction: str) -> list[list]:
    """`[trial, value]` pairs best first; values that are not finite last; ties by trial id.

    >>> ranked([[0, 0.5], [1, float("nan")], [2, 0.9], [3, 0.9]], "max")
    [[2, 0.9], [3, 0.9], [0, 0.5], [1, nan]]
    """
    sign = -1.0 if direction == "max" else 1.0

    def key(pair: Sequence) -> tuple:
        good = finite(pair[1])
        return (not good, sign * pair[1] if good else 0.0, pair[0])

    return [list(pair) for pair in sorted(pairs, key=key)]


class PBT(Stateful):
    """Population-based training: exploit the top `quantile`, explore around it.

    `space` maps names to distributions (explored) or fixed values (never changed, nor is
    `seed`); `ready` is the steps a trial trains between two decisions. Trials that differ in
    a `group_by` value (the model's structure: a copied member's weights fit only its own)
    are ranked apart: a trial copies only a member of its own group.

    >>> from sweepjax.search.distributions import LogUniform
    >>> pbt = PBT("max", {"lr": LogUniform(1e-4, 1e-1)}, ready=10, quantile=0.5)
    >>> obs = [Observation(t, t, 10, v, {"lr": 0.01}) for t, v in enumerate([0.9, 0.1])]
    >>> [(a.trial, a.source_trial) for a in pbt.decide(obs, 10)]
    [(1, 0)]
    >>> 1e-4 <= pbt.history()[0]["new"]["lr"] <= 1e-1
    True
    """

    name = "pbt"
    CONFIG = ("direction", "ready", "quantile", "resample_probability", "perturb", "seed", "names")
    STATE = ("last", "count", "history")

    def __init__(
        self,
        direction: str,
        space: Mapping[str, Any],
        ready: int,
        quantile: float = 0.25,
        resample_probability: float = 0.25,
        perturb: Sequence[float] = (0.8, 1.2),
        seed: int = 0,
        group_by: Sequence[str] = (),
    ):
        check_direction(direction, "scheduler.direction")
        check_int("ready", ready, 1)
        q, p = quantile, resample_probability
        check(
            "quantile", q, is_number(q) and 0 < q <= 0.5, "is out of range", "a number in (0, 0.5]"
        )
        ok = is_number(p) and 0 <= p <= 1
        check("resample_probability", p, ok, "is out of range", "a probability in [0, 1]")
        ok = isinstance(perturb, Sequence) and len(perturb) > 0
        ok = ok and all(finite(f) and f > 0 for f in perturb)
        check("perturb", perturb, ok, "is not allowed", "a non-empty list of positive factors")
        check("seed", seed, is_int(seed), "is not an integer", "an integer")
        check("space", space, isinstance(space, Mapping), "is not a mapping", "name -> value")
        ok = not isinstance(group_by, str) and all(isinstance(k, str) for k in group_by)
        check("group_by", group_by, ok, "is not allowed", "a list of hyperparameter names")
        self.group_by = [str(k) for k in group_by]
        self.direction, self.ready, self.quantile = direction, int(ready), float(q)
        self.resample_probability, self.seed = float(p), int(seed)
        self.perturb = [float(f) for f in perturb]
        self.space = {k: v for k, v in space.items() if is_distribution(v) and k != "seed"}
        self.names = sorted(self.space)
        self._last: dict[str, int] = {}  # trial -> its steps at its last decision
        self._count = 0  # exploits made: the counter of the random draws
        self._history: list[dict[str, Any]] = []

    def config(self) -> dict[str, Any]:
        """Its settings; `group_by` only when set, so a state saved before it loads."""
        config = super().config()
        return {**config, "group_by": self.group_by} if self.group_by else config

    def decide(self, observations: Sequence[Observation], step: int) -> list[Exploit]:
        """Exploit and explore among the trials ready now, within each group of equal
        `group_by` values (in the order of their lowest trial); see the class docstring."""
        last = self._last
        ready = [o for o in observations if o.steps - last.get(str(o.trial), 0) >= self.ready]
        for obs in ready:
            last[str(obs.trial)] = int(obs.steps)
        groups: dict[str, list[Observation]] = {}
        for obs in sorted(ready, key=lambda o: o.trial):
            key = repr([builtin(obs.hparams.get(k)) for k in self.group_by])
            groups.setdefault(key, []).append(obs)
        return [action for group in groups.values() for action in self._truncate(group, step)]

    def _truncate(self, ready: list[Observation], step: int) -> list[Exploit]:
        """Truncation selection among `ready`: the bottom `quantile` copy from the top."""
        good = ranked([[o.trial, float(o.value)] for o in ready if finite(o.value)], self.direction)
        n = len(good)
        k = max(math.floor(n * self.quantile + 1e-9), 1 if n >= 2 else 0)
        top = [t for t, _ in good[: max(k, 1)]]
        losers = [t for t, _ in good[n - k :]]
        losers += [o.trial for o in ready if not finite(o.value)]
        by_trial = {o.trial: o for o in ready}
        sources = [by_trial[t] for t in top]
        return [self._exploit(by_trial[t], sources, step) for t in sorted(losers)] if top else []

    def _exploit(self, obs: Observation, top: list[Observation], step: int) -> Exploit:
        """`obs`'s trial copies a member of `top` and explores around its values."""
        rng = np.random.default_rng([self.seed % 2**64, self._count])
        self._count += 1
        source = top[int(rng.integers(len(top)))]
        new = {k: self._explore(d, source.hparams.get(k), rng) for k, d in self.space.items()}
        self._history.append(
            {
                "step": int(step),
                "trial": int(obs.trial),
                "trial_steps": int(obs.steps),
                "value": float(obs.value),
                "source_trial": int(source.trial),
                "source_value": float(source.value),
                "old": {k: builtin(obs.hparams.get(k)) for k in self.space},
                "new": new,
            }
        )
        return Exploit(int(obs.slot), int(obs.trial), int(source.slot), int(source.trial), new)

    def _explore(self, dist: Any, value: Any, rng: np.random.Generator) -> Any:
        """A new value near the source's `value` (or a fresh draw) within `dist`."""
        resample = rng.random() < self.resample_probability
        value = builtin(value)
        if isinstance(dist, Choice):
            index = _nearest(dist.values, value)
            if resample or index is None:
                index = min(int(rng.random() * len(dist.values)), len(dist.values) - 1)
            else:
                index = int(np.clip(index + rng.integers(-1, 2), 0, len(dist.values) - 1))
            return builtin(dist.values[index])
        if resample or not finite(value):
            return builtin(dist.ppf(np.float64(rng.random())))
        moved = value * self.perturb[int(rng.integers(len(self.perturb)))]
        if isinstance(dist, IntUniform):
            rounded = round(moved)
            if rounded == value and moved != value:  # 2 * 1.2 rounds back to 2: move one step
                rounded += 1 if moved > value else -1
            return int(min(max(rounded, dist.low), dist.high))
        return float(min(max(moved, dist.low), dist.high))

    def history(self) -> list[dict[str, Any]]:
        """Every exploit so far: `step`, `trial`, `trial_steps`, `value`, `source_trial`,
        `source_value`, `old` and `new` (the searched hyperparameters before and after)."""
        return copy.deepcopy(self._history)


def _nearest(values: Sequence[Any], value: Any) -> int | None:
    """The index of `value` among a `Choice`'s values (the nearest number), None if absent."""
    if is_number(value) and all(is_number(v) for v in values):
        return int(np.argmin([abs(v - value) for v in values]))
    return values.index(value) if value in values else None
