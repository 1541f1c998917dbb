"""Dense baselines: the single dense model and the deep ensemble (Lakshminarayanan et al.
2017), M dense networks trained independently from different random initialisations."""
import gin

from methods.base import METHODS, IndependentEnsemble


@METHODS.register("dense")
@gin.configurable
class Dense(IndependentEnsemble):
    """One dense network (M = 1), the reference every ratio is taken against."""

    name = "dense"
    display_name = "Single Dense Model"

    def __init__(self, num_members: int = 1):
        super().__init__(num_members)


@METHODS.register("dense_ensemble")
@gin.configurable
class DenseEnsemble(IndependentEnsemble):
    """Deep ensemble: M dense networks trained independently from different seeds."""

    name = "dense_ensemble"
    display_name = "Dense Ensemble"

    def __init__(self, num_members: int = 4):
        super().__init__(num_members)
