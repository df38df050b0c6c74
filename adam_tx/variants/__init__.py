"""The modern Adam family, one module per variant.

Each variant is a ``scale_by_*`` direction (optax's name and a NamedTuple
state with ``count`` first) and an alias chaining it with
:func:`adam_tx.add_decayed_weights` and :func:`adam_tx.scale_by_learning_rate`;
all take the storage options of :func:`adam_tx.scale_by_adam` (``mu_dtype``,
``nu_dtype``, ``state_format``, ``seed``) and fuse into one pass per leaf.

* :mod:`~adam_tx.variants.radam`: RAdam (optax's and torch's conventions).
* :mod:`~adam_tx.variants.lamb`: LAMB, the per-leaf trust ratio.
* :mod:`~adam_tx.variants.adopt`: ADOPT.
* :mod:`~adam_tx.variants.ademamix`: AdEMAMix and its alpha/b3 schedulers.
* :mod:`~adam_tx.variants.cautious`: cautious masking of any direction.
* :mod:`~adam_tx.variants.atan2`: Adam-atan2, eps-free and scale invariant.
* :mod:`~adam_tx.variants.stable_adamw`: StableAdamW's update-RMS clipping.
* :mod:`~adam_tx.variants.schedule_free`: schedule-free AdamW.
* :mod:`~adam_tx.variants.wsd`: the warmup-stable-decay schedule.
* :mod:`~adam_tx.variants.spikes`: the loss-spike guard.
"""

from adam_tx.variants.ademamix import (
    ScaleByAdemamixState,
    ademamix,
    alpha_scheduler,
    b3_scheduler,
    scale_by_ademamix,
)
from adam_tx.variants.adopt import ScaleByAdoptState, adopt, scale_by_adopt
from adam_tx.variants.atan2 import (
    ScaleByAdamAtan2State,
    adam_atan2,
    scale_by_adam_atan2,
)
from adam_tx.variants.cautious import cautious, cautious_adamw, cautious_mask
from adam_tx.variants.lamb import ScaleByTrustRatioState, lamb, scale_by_trust_ratio
from adam_tx.variants.radam import ScaleByRAdamState, radam, scale_by_radam
from adam_tx.variants.schedule_free import (
    ScaleByRmsDebiasedState,
    ScaleByScheduleFreeState,
    scale_by_rms_debiased,
    scale_by_schedule_free,
    schedule_free_adamw,
    schedule_free_eval_params,
)
from adam_tx.variants.spikes import SkipSpikesState, skip_spikes
from adam_tx.variants.stable_adamw import (
    ScaleByStableAdamState,
    scale_by_stable_adam,
    stable_adamw,
)
from adam_tx.variants.wsd import wsd_schedule

__all__ = [
    "ScaleByAdamAtan2State",
    "ScaleByAdemamixState",
    "ScaleByAdoptState",
    "ScaleByRAdamState",
    "ScaleByRmsDebiasedState",
    "ScaleByScheduleFreeState",
    "ScaleByStableAdamState",
    "ScaleByTrustRatioState",
    "SkipSpikesState",
    "adam_atan2",
    "ademamix",
    "adopt",
    "alpha_scheduler",
    "b3_scheduler",
    "cautious",
    "cautious_adamw",
    "cautious_mask",
    "lamb",
    "radam",
    "scale_by_adam_atan2",
    "scale_by_ademamix",
    "scale_by_adopt",
    "scale_by_radam",
    "scale_by_rms_debiased",
    "scale_by_schedule_free",
    "scale_by_stable_adam",
    "scale_by_trust_ratio",
    "schedule_free_adamw",
    "schedule_free_eval_params",
    "skip_spikes",
    "stable_adamw",
    "wsd_schedule",
]
