"""Ensembles inside one network, trained in one run of the shared loop (paper Tables 1-3, the
rows taken from Havasi et al. 2021): MC Dropout, BatchEnsemble, MIMO and TreeNet.

Each method names its architecture variant (harness/models/variants.py, built through the
model factory), its batch format (harness/engine/batching.py), its loss, its optimizer parameter
groups where it has them, and the predictor that turns the trained network into M members.
Planned FLOPs probe the same variant with the same format's rows, so that planned and
measured figures count the same thing: every row the network processes. Every loss here smooths
its labels by the run's `Trainer.label_smoothing` (harness/engine/train.py), as the default
loss does.
"""
import gin
import torch
import torch.nn.functional as F
from torch import nn

from harness.engine.batching import BatchFormat, MimoBatch, PlainBatch, TiledBatch
from harness.core.errors import UserError
from harness.flops import dense_forward_flops, layer_forward_flops
from harness.flops.plan import FlopsPlan, PlanContext
from harness.models.variants import member_biases, rank_one_factors
from harness.evaluation.predictors import (MimoPredictor, MultiHeadPredictor, Predictor,
                                         SampledPredictor, TiledPredictor)
from harness.engine.train import ParamGroups, classification_loss
from methods.base import METHODS, FitContext, Method, check_members

STAGE = "network"


class OneNetworkMethod(Method):
    """One network, one training run; subclasses name the variant, format, loss and
    predictor."""

    @property
    def training_runs(self) -> float:
        return 1.0

    def model_options(self) -> dict:
        raise NotImplementedError

    def batch_format(self) -> BatchFormat:
        return PlainBatch()

    def objective(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                  label_smoothing: float = 0.0) -> torch.Tensor:
        return classification_loss(model, inputs, targets, label_smoothing)

    def param_groups(self) -> ParamGroups | None:
        return None

    def predictor(self, network: nn.Module) -> Predictor:
        raise NotImplementedError

    def _meta_model(self, context: PlanContext) -> nn.Module:
        with torch.device("meta"):
            return context.model_factory(**self.model_options())

    def validate(self, context: PlanContext) -> None:
        self._meta_model(context)  # a variant that cannot be built raises UserError here

    def plan_flops(self, context: PlanContext) -> FlopsPlan:
        """Training: 3 x forward per network row, the format's rows per step. Test: one
        prediction of the predictor on one example, spread evenly over its members."""
        model = self._meta_model(context)
        batch_format = self.batch_format()
        per_row = dense_forward_flops(layer_forward_flops(
            model, batch_format.input_shape(context.image_shape), rows=batch_format.probe_rows))
        train = 3 * per_row * batch_format.rows(context.batch_size) * context.steps()
        test = dense_forward_flops(layer_forward_flops(self.predictor(model),
                                                       context.image_shape))
        return FlopsPlan(train, (test / self.num_members,) * self.num_members)

    def fit(self, context: FitContext) -> Predictor:
        seed = context.member_seed(0)
        model = context.build_model(seed, **self.model_options())
        context.stage(STAGE, model, seed=seed, objective=self.objective,
                      batch_format=self.batch_format(), param_groups=self.param_groups())
        return self.predictor(model)


@METHODS.register("mc_dropout")
@gin.configurable
class MCDropout(OneNetworkMethod):
    """Monte Carlo dropout (Gal & Ghahramani 2016) as uncertainty-baselines trains it: dropout
    after the first 3x3 conv of every residual block, on at training and test; the prediction
    averages `num_samples` stochastic passes (K), each counted as a member."""

    name = "mc_dropout"
    display_name = "Monte Carlo Dropout"

    def __init__(self, dropout_rate: float = 0.1, num_samples: int = 1):
        if not 0 <= dropout_rate < 1:
            raise UserError(f"MCDropout.dropout_rate must be in [0, 1), got {dropout_rate}")
        check_members("MCDropout", num_samples, "num_samples")
        self.dropout_rate = dropout_rate
        self.num_members = num_samples

    def model_options(self) -> dict:
        return {"mc_dropout": self.dropout_rate}

    def predictor(self, network):
        return SampledPredictor(network, self.num_members)


@METHODS.register("batch_ensemble")
@gin.configurable
class BatchEnsemble(OneNetworkMethod):
    """BatchEnsemble (Wen et al. 2020): M members sharing every slow weight, each with rank-1
    fast weights; the batch tiled M times member-major at training and test; loss = mean
    cross-entropy over all M x B rows (uncertainty-baselines). Every fast weight (r, s and the
    per-member bias) gets the learning-rate (= gradient) multiplier; r and s get their own
    weight decay (`fast_weight_decay`, none in UB), while the per-member bias is decayed like
    the slow weights (UB's `bias_regularizer` is the same l2 as its kernels')."""

    name = "batch_ensemble"
    display_name = "BatchEnsemble"

    def __init__(self, num_members: int = 4, fast_weight_lr_multiplier: float = 0.5,
                 fast_weight_decay: float = 0.0):
        check_members("BatchEnsemble", num_members)
        if fast_weight_lr_multiplier <= 0 or fast_weight_decay < 0:
            raise UserError(f"BatchEnsemble needs fast_weight_lr_multiplier > 0 and "
                            f"fast_weight_decay >= 0, got {fast_weight_lr_multiplier} and "
                            f"{fast_weight_decay}")
        self.num_members = num_members
        self.fast_weight_lr_multiplier = fast_weight_lr_multiplier
        self.fast_weight_decay = fast_weight_decay

    def model_options(self) -> dict:
        return {"batch_ensemble": self.num_members}

    def batch_format(self) -> BatchFormat:
        return TiledBatch(self.num_members)

    def param_groups(self) -> ParamGroups:
        def groups(model: nn.Module) -> list[dict]:
            rank_one, biases = rank_one_factors(model), member_biases(model)
            fast_ids = {id(param) for param in (*rank_one, *biases)}
            slow = [param for param in model.parameters() if id(param) not in fast_ids]
            return [{"params": slow},
                    {"params": rank_one, "weight_decay": self.fast_weight_decay,
                     "lr_scale": self.fast_weight_lr_multiplier},
                    {"params": biases, "lr_scale": self.fast_weight_lr_multiplier}]
        return groups

    def predictor(self, network):
        return TiledPredictor(network, self.num_members)


def mimo_loss(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
              label_smoothing: float = 0.0) -> torch.Tensor:
    """Sum over members of each member's cross-entropy, averaged over rows (Havasi et al.
    2021; uncertainty-baselines `mimo.py`): logits [rows, M, C], targets [rows, M]."""
    logits = model(inputs)
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none",
                           label_smoothing=label_smoothing).view_as(targets).sum(1).mean()


@METHODS.register("mimo")
@gin.configurable
class MIMO(OneNetworkMethod):
    """MIMO (Havasi et al. 2021): M subnetworks in one network with M inputs and M outputs;
    training rows carry M independently shuffled images (harness/engine/batching.py `MimoBatch`),
    test rows the same image M times."""

    name = "mimo"
    display_name = "MIMO"

    def __init__(self, num_members: int = 3, batch_repetitions: int = 4,
                 input_repetition_probability: float = 0.0):
        check_members("MIMO", num_members)
        self.num_members = num_members
        self.format = MimoBatch(num_members, batch_repetitions, input_repetition_probability)

    def model_options(self) -> dict:
        return {"mimo": self.num_members}

    def batch_format(self) -> BatchFormat:
        return self.format

    def objective(self, model, inputs, targets, label_smoothing=0.0):
        return mimo_loss(model, inputs, targets, label_smoothing)

    def predictor(self, network):
        return MimoPredictor(network, self.num_members)


def tree_loss(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
              label_smoothing: float = 0.0) -> torch.Tensor:
    """Sum over branches of each branch's mean cross-entropy (Lee et al. 2015): every branch
    gets the gradient it would get alone, the shared trunk the sum of theirs."""
    logits = model(inputs)  # [M, B, C]
    return F.cross_entropy(logits.flatten(0, 1), targets.repeat(logits.shape[0]),
                           reduction="sum", label_smoothing=label_smoothing) / targets.shape[0]


@METHODS.register("treenet")
@gin.configurable
class TreeNet(OneNetworkMethod):
    """TreeNet (Lee et al. 2015): the backbone's first `split` stages (first conv or stem and
    residual blocks, harness/models `stages`) shared as one trunk, the rest as M branches."""

    name = "treenet"
    display_name = "TreeNet"

    def __init__(self, num_members: int = 3, split: int = 10):
        check_members("TreeNet", num_members)
        self.num_members = num_members
        self.split = split

    def model_options(self) -> dict:
        return {"tree_branches": self.num_members, "tree_split": self.split}

    def objective(self, model, inputs, targets, label_smoothing=0.0):
        return tree_loss(model, inputs, targets, label_smoothing)

    def predictor(self, network):
        return MultiHeadPredictor(network, self.num_members)
