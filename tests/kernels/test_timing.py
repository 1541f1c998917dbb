"""How the harness times alternatives (harness/kernels/timing.py): one warm-up each, then
rounds that call every side in turn; medians, and the spread of per-round ratios."""
from harness.kernels import timing


def test_each_function_is_warmed_up_once_then_called_once_a_round_in_turn():
    calls = []
    times = timing.round_seconds([lambda: calls.append("a"), lambda: calls.append("b")], 3)
    assert calls == ["a", "b"] * 4
    assert [len(series) for series in times] == [3, 3]
    assert all(seconds >= 0 for series in times for seconds in series)


def test_medians_and_the_spread_of_round_by_round_ratios():
    assert timing.spread([3.0, 1.0, 2.0]) == {"min": 1.0, "median": 2.0, "max": 3.0}
    assert timing.ratio_spread([2.0, 6.0, 3.0], [1.0, 2.0, 3.0]) == {"min": 1.0, "median": 2.0,
                                                                      "max": 3.0}
