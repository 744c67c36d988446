"""The vectorization width W: how many members of a device's share one `vmap` trains.

`width_search` picks W:
  * memory first: the largest W whose compiled step fits the device with headroom
    (`sweepjax.engine.placement.widest_fitting`);
  * then speed, on the CPU, where every width gives the same numbers: with
    `population_width="auto"`, the sweep's first chunks try the candidate widths (P, P/4,
    P/16, ..., 2 per device) on the actual model, each timed, and the fastest trains the rest
    (`WidthSearch`). Trying a width costs its compilation and what its chunk loses if it is
    slower, so the search goes on only while the remaining sweep pays for it. Choices are
    remembered per program, population and device in the process (`CHOSEN_WIDTHS`). On a GPU
    or TPU, whose kernels may round differently at another width, `"auto"` is the widest width
    that fits, so the same command gives the same numbers whatever the machine's load.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

import jax
from jax.sharding import Mesh
from tqdm.auto import tqdm

from sweepjax.engine import distributed
from sweepjax.engine.layout import MIN_WIDTH
from sweepjax.engine.placement import widest_fitting
from sweepjax.engine.population import Population, Program
from sweepjax.search.space import HParams

TRY_BUDGET = 0.2  # try another width only if its trial costs at most this of the remaining time
TRIAL_COMPILE_SECONDS = 1.0  # a trial's least compilation (the last may have been compiled before)
REMEMBERED = 64  # choices kept, as many as the compiled-program caches keep programs


class ChosenWidths:
    """Widths that `"auto"` searches chose, for later sweeps of the same program in a process.

    Keyed by program, population size, devices, device kind and the widest width that fits;
    the `REMEMBERED` latest choices are kept. `scoped()` gives a block a memory of its own.

    >>> chosen = ChosenWidths()
    >>> chosen.remember(("program", 8), 4)
    >>> with chosen.scoped():
    ...     chosen.get(("program", 8))
    >>> chosen.get(("program", 8))
    4
    """

    def __init__(self) -> None:
        self._widths: dict[tuple, int] = {}

    def get(self, key: tuple) -> int | None:
        return self._widths.get(key)

    def remember(self, key: tuple, width: int) -> None:
        self._widths.pop(key, None)
        if len(self._widths) >= REMEMBERED:
            del self._widths[next(iter(self._widths))]  # the oldest
        self._widths[key] = width

    def clear(self) -> None:
        """Forget every choice, as a fresh process would."""
        self._widths.clear()

    @contextlib.contextmanager
    def scoped(self) -> Iterator[ChosenWidths]:
        """Inside the block nothing chosen before is known; its own choices end with it."""
        outside, self._widths = self._widths, {}
        try:
            yield self
        finally:
            self._widths = outside


# The process's one memory of chosen widths: a second sweep of a program in the same process
# trains at the width the first one's search chose, without searching again.
CHOSEN_WIDTHS = ChosenWidths()


def _candidates(share: int, fits: int) -> list[int]:
    """Widths to try, widest first: the widest that fits, then a quarter each time, then the
    narrowest group (`MIN_WIDTH`).

    >>> _candidates(64, 64), _candidates(64, 20), _candidates(2, 2)
    ([64, 16, 4, 2], [20, 5, 2], [2])
    """
    widths = [max(min(share, fits), MIN_WIDTH)]
    while widths[-1] > MIN_WIDTH:
        widths.append(max(-(-widths[-1] // 4), MIN_WIDTH))
    return widths


class WidthSearch:
    """The vectorization width of a sweep, chosen while it trains.

    The sweep's first chunks run at the candidate widths, widest first, each timed (compilation
    excluded); the fastest is kept for the rest of the sweep. Members do not depend on the
    width, so no step is wasted: trying a width costs its compilation and the time the chunk
    loses if that width is slower. The search stops at a width twice as slow as the best (the
    narrower ones only got slower in every measurement), and does not try another width unless
    the sweep's remaining time at the best rate is at least `1 / TRY_BUDGET` times the last
    trial (its chunk, and its compilation or `TRIAL_COMPILE_SECONDS` if more). With several
    processes, process 0's timings decide.

    Args:
      widths: the candidates, widest first (None: every member at once, not searched).
      member_steps: the member-steps the sweep still has to train.
      key: where `CHOSEN_WIDTHS` remembers the choice for later sweeps of the same program.

    >>> search = WidthSearch([32, 8], member_steps=10**6)
    >>> search.width, search.searching
    (32, True)
    >>> search.record(seconds=1.0, compile_seconds=1.0, member_steps=10_000)
    >>> search.width  # the remaining 990,000 member-steps pay for trying 8
    8
    >>> search.record(seconds=0.5, compile_seconds=1.0, member_steps=10_000)
    >>> search.width, search.searching, search.rates
    (8, False, {32: 10000.0, 8: 20000.0})
    """

    def __init__(
        self, widths: list[int | None], member_steps: int, key: tuple | None = None
    ) -> None:
        self.width = widths[0]
        self.searching = len(widths) > 1
        self._untried = list(widths[1:])
        self._seconds: dict[int, float] = {}  # per member-step
        self._left = member_steps
        self._key = key

    @property
    def rates(self) -> dict[int, float]:
        """Member-steps per second of each width tried."""
        return {w: round(1 / s, 1) for w, s in self._seconds.items()}

    def record(self, seconds: float, compile_seconds: float, member_steps: int) -> None:
        """A chunk of `member_steps` at `self.width` trained in `seconds`, after compiling in
        `compile_seconds` (0 when it was compiled before)."""
        self._left -= member_steps
        if not self.searching:
            return
        self._seconds[self.width] = distributed.from_primary(seconds / member_steps)
        best = min(self._seconds, key=self._seconds.get)
        go_on = (
            bool(self._untried)
            and self._seconds[self.width] <= 2 * self._seconds[best]
            and TRY_BUDGET * self._left * self._seconds[best]
            >= max(compile_seconds, TRIAL_COMPILE_SECONDS) + seconds
        )
        if distributed.from_primary(go_on):
            self.width = self._untried.pop(0)
            return
        self.width, self.searching = best, False
        if self._key is not None:
            CHOSEN_WIDTHS.remember(self._key, best)


def width_search(
    setting: int | str,
    program: Program,
    pop: Population,
    hparams: HParams,
    train: Any,
    *,
    mesh: Mesh | None = None,
    member_steps: int = 0,
    chosen: int | None = None,
    quiet: bool = True,
) -> WidthSearch:
    """The vectorization width W for each device: `setting` if an int, else searched (module).

    Args:
      setting: `config.population_width`: a positive int (members per group, capped at each
        device's share) or `"auto"`.
      program, pop, hparams, train: the sweep's, placed as it trains.
      mesh: the population mesh, or None for one device.
      member_steps: the member-steps still to train (whether trying widths and planning memory
        pay).
      chosen: the width an `"auto"` search chose earlier in this sweep (a resumed sweep keeps
        it, so it trains as it would have without the stop).
      quiet: no note on stderr about the memory.

    Returns:
      A `WidthSearch`: train each chunk at its `width` and `record` the chunk's time.

    Raises:
      DoesNotFit: not even the narrowest group fits the device, with the estimate.

    >>> import numpy as np
    >>> import sweepjax
    >>> from sweepjax.engine.population import init_population
    >>> from sweepjax.runner.run import program_of, sample_hparams
    >>> config = sweepjax.Config(population=4, steps=10, batch_size=8)
    >>> program, hp = program_of(config), sample_hparams(config)
    >>> train = {"inputs": np.zeros((8, 40), np.float32), "targets": np.zeros(8, np.int32)}
    >>> pop = init_population(program, hp, train["inputs"])
    >>> width_search(2, program, pop, hp, train).width
    2
    """
    devices = 1 if mesh is None else mesh.size
    share = pop.size // devices
    fits = widest_fitting(program, pop, hparams, train, devices=devices, member_steps=member_steps)
    if setting != "auto":
        width = min(int(setting), share)
        if width > fits:
            _note(quiet, f"population_width={width} does not fit; using {fits}")
            width = fits
        return WidthSearch([width], member_steps)
    if chosen is not None:
        return WidthSearch([min(chosen, fits)], member_steps)
    if jax.devices()[0].platform != "cpu":  # kernels follow the width: the widest, every time
        return WidthSearch([fits], member_steps)
    key = (program, pop.size, devices, jax.devices()[0].device_kind, fits)
    remembered = CHOSEN_WIDTHS.get(key)
    if remembered is not None:
        return WidthSearch([remembered], member_steps)
    return WidthSearch(_candidates(share, fits), member_steps, key)


def _note(quiet: bool, message: str) -> None:
    if not quiet:  # through tqdm, so a progress bar on the same terminal is redrawn below it
        tqdm.write(f"sweepjax: {message}", file=sys.stderr)
