"""Wall-clock of alternatives side by side: how every time and speed-up in the harness is
measured (kernel choice, a run's inference timing, exports, `make bench`, 'auto' training
kernels).

It measures as it does because the figures come from shared machines (CI, a 2-core box
running other work) and from first calls that cost more than the rest:

  * one warm-up call of each function before any round: a first call pays one-time costs
    (oneDNN primitive creation, a sparse kernel's plan, allocator growth) later calls do not;
  * round-robin: each round calls every function once, in turn, instead of all rounds of one
    and then the other, so a burst of load from elsewhere hits every side alike, and a ratio
    can be taken round by round;
  * medians, not means: a round that another process interrupted can be off by half, and one
    such round moves a mean but not a median;
  * min / median / max reported (`spread`): how far one figure can be trusted shows in print;
  * time.perf_counter: monotonic and the finest wall clock. Device work is asynchronous, so a
    function that launches it synchronizes itself before returning.
"""
import statistics
import time
from typing import Callable, Sequence


def call_seconds(function: Callable[[], object]) -> float:
    """Wall-clock of one call of `function`."""
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def round_seconds(functions: Sequence[Callable[[], object]], rounds: int) -> list[list[float]]:
    """Wall-clock of each function in each of `rounds`, run alternately (round-robin) after
    one warm-up each."""
    for function in functions:
        function()
    times: list[list[float]] = [[] for _ in functions]
    for _ in range(rounds):
        for index, function in enumerate(functions):
            times[index].append(call_seconds(function))
    return times


def side_by_side(functions: Sequence[Callable[[], object]], rounds: int
                 ) -> tuple[list[float], list[list[float]]]:
    """Median seconds of each function, and the seconds of every round (`round_seconds`)."""
    times = round_seconds(functions, rounds)
    return [statistics.median(series) for series in times], times


def median_seconds(functions: Sequence[Callable[[], object]], rounds: int) -> list[float]:
    """Median wall-clock of each function over `rounds` (`round_seconds`)."""
    return side_by_side(functions, rounds)[0]


def spread(values: Sequence[float]) -> dict[str, float]:
    """min, median and max over rounds: how every time or speed-up is printed and stored."""
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def ratio_spread(numerators: Sequence[float], denominators: Sequence[float]
                 ) -> dict[str, float]:
    """`spread` of the ratio taken round by round (both sides of a round saw the same load)."""
    return spread([top / bottom for top, bottom in zip(numerators, denominators)])
