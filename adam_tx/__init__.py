"""adam_tx: Adam-family gradient transformations for JAX and optax.

Every piece of Adam is its own ``optax.GradientTransformation`` with pytree
state; :func:`chain` composes them (and fuses adjacent adam_tx pieces into one
elementwise pass per parameter).
"""

from optax import apply_updates

from adam_tx import checkpoint, debug, recipes, schedules, sharding, variants
from adam_tx._engine.fusion import chain
from adam_tx.adabelief import ScaleByBeliefState, scale_by_belief
from adam_tx.adam import ScaleByAdamState, scale_by_adam
from adam_tx.adamax import ScaleByAdamaxState, scale_by_adamax
from adam_tx.alias import (
    adabelief,
    adagrad,
    adam,
    adamax,
    adamw,
    amsgrad,
    nadam,
    nadamw,
    rmsprop,
    sgd,
)
from adam_tx.amsgrad import ScaleByAmsgradState, scale_by_amsgrad
from adam_tx.baselines import (
    ScaleByAdagradState,
    ScaleByRmsState,
    ScaleByStddevState,
    TraceState,
    scale_by_adagrad,
    scale_by_rms,
    trace,
)
from adam_tx.bias_correction import BiasCorrectionState, bias_correction
from adam_tx.clipping import (
    AdaptiveGradClipState,
    ClipByGlobalNormState,
    ClipState,
    adaptive_grad_clip,
    clip,
    clip_by_global_norm,
    global_norm,
)
from adam_tx.grouping import GroupedState, group_small_leaves
from adam_tx.hyperparams import get_hyperparams, set_hyperparams
from adam_tx.learning_rate import (
    ScaleByLearningRateState,
    ScaleByScheduleState,
    scale_by_learning_rate,
    scale_by_schedule,
)
from adam_tx.loss_scale import LossScaleState, loss_scaling, scale_loss
from adam_tx.lr_finder import RangeTestResult, lr_range_test
from adam_tx.memory import StateReport, state_bytes, state_report
from adam_tx.nonfinite import SkipNonfiniteState, skip_nonfinite
from adam_tx.stats import TrackStatsState, stats, track_stats
from adam_tx.switch import SwitchState, switch
from adam_tx.variants import *  # noqa: F403  (variants.__all__, listed there once)
from adam_tx.weight_decay import AddDecayedWeightsState, add_decayed_weights, decay_mask

__version__ = "0.1.0"

__all__ = [
    # The variants, as adam_tx.variants lists them.
    *variants.__all__,
    "variants",
    "GroupedState",
    "AdaptiveGradClipState",
    "AddDecayedWeightsState",
    "BiasCorrectionState",
    "ClipByGlobalNormState",
    "ClipState",
    "LossScaleState",
    "RangeTestResult",
    "ScaleByAdagradState",
    "ScaleByAdamState",
    "ScaleByAdamaxState",
    "ScaleByAmsgradState",
    "ScaleByBeliefState",
    "ScaleByLearningRateState",
    "ScaleByRmsState",
    "ScaleByScheduleState",
    "ScaleByStddevState",
    "SkipNonfiniteState",
    "StateReport",
    "SwitchState",
    "TraceState",
    "TrackStatsState",
    "adabelief",
    "adagrad",
    "adam",
    "adamax",
    "adamw",
    "adaptive_grad_clip",
    "add_decayed_weights",
    "amsgrad",
    "apply_updates",
    "bias_correction",
    "chain",
    "checkpoint",
    "clip",
    "clip_by_global_norm",
    "debug",
    "decay_mask",
    "get_hyperparams",
    "group_small_leaves",
    "global_norm",
    "loss_scaling",
    "lr_range_test",
    "nadam",
    "nadamw",
    "recipes",
    "rmsprop",
    "scale_by_adagrad",
    "scale_by_adam",
    "scale_by_adamax",
    "scale_by_amsgrad",
    "scale_by_belief",
    "scale_by_learning_rate",
    "scale_by_rms",
    "scale_by_schedule",
    "scale_loss",
    "schedules",
    "sharding",
    "set_hyperparams",
    "sgd",
    "switch",
    "skip_nonfinite",
    "state_bytes",
    "state_report",
    "stats",
    "trace",
    "track_stats",
]
