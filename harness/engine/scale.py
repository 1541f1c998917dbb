"""Run lengths at the chosen scale (gin/scale/*.gin).

Configs give every length in the paper's epochs; a scale multiplies them all by one factor,
so `smoke` and `cpu` runs keep each method's phases in proportion and its logic unchanged.
"""
import gin

from harness.core.errors import check_number


@gin.configurable
def epoch_factor(factor: float = 1.0) -> float:
    return check_number("epoch_factor.factor", factor, positive=True)


def epochs(paper_epochs: float) -> int:
    """A paper-scale length in epochs at the configured scale, at least one epoch."""
    return max(1, round(paper_epochs * epoch_factor()))
