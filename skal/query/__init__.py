"""Query strategies and the measures behind them.

A strategy is ``strategy(learner, X_pool, n_instances=1, **kw) -> (indices, scores)``
(modAL's convention); measures (``classifier_entropy``, ...) are separate functions.
"""

from .aift import AIFT, acft_select, aift_scores
from .base import multi_argmax, score_pool
from .bayesian import (bald_committee_sampling, bald_sampling, committee_bald,
                       max_entropy_mc, mc_dropout_proba, variation_ratios)
from .deep_ensemble import DeepEnsemble
from . import disagreement
from .disagreement import (KL_max_disagreement, consensus_entropy,
                           consensus_entropy_sampling, max_disagreement_sampling,
                           vote_entropy, vote_entropy_sampling)
from .random import random_sampling
from .diversity import badge_sampling, coreset_sampling
from .gradnorm import (classifier_entropy_gradnorm, classifier_expected_gradnorm,
                       entropy_gradnorm, expected_gradnorm)
from .latent import LatentHardSampling
from .synthesis import Synthesized
from .tdgf import TDGF, tdgf_scores
from .typiclust import TypiClust
from .probcover import ProbCover
from .schedule import ModelQualityAbove, StrategySchedule, TypiclustThenMargin
from .uncertainty import (classifier_entropy, classifier_margin, classifier_uncertainty,
                          entropy_sampling, margin_sampling, uncertainty_sampling)

__all__ = [
    "AIFT",
    "aift_scores",
    "acft_select",
    "bald_sampling",
    "max_entropy_mc",
    "variation_ratios",
    "mc_dropout_proba",
    "committee_bald",
    "bald_committee_sampling",
    "DeepEnsemble",
    "random_sampling",
    "expected_gradnorm",
    "entropy_gradnorm",
    "classifier_expected_gradnorm",
    "classifier_entropy_gradnorm",
    "badge_sampling",
    "coreset_sampling",
    "LatentHardSampling",
    "Synthesized",
    "TDGF",
    "tdgf_scores",
    "TypiClust",
    "ProbCover",
    "StrategySchedule",
    "TypiclustThenMargin",
    "ModelQualityAbove",
    "uncertainty_sampling",
    "margin_sampling",
    "entropy_sampling",
    "classifier_uncertainty",
    "classifier_margin",
    "classifier_entropy",
    *disagreement.__all__,       # the committee measures and strategies, all of them
    "multi_argmax",
    "score_pool",
]
