"""Methods, one module per family; importing this package registers them all."""
from methods import checkpoint_ensembles, dense, one_network  # noqa: F401
from methods.sparse import edst, ensembles, pruned_ensembles  # noqa: F401
from methods.base import METHODS, FitContext, Method  # noqa: F401
