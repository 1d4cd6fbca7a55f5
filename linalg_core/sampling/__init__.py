"""ℓp row sampling ("Sharper Bounds for ℓp Sensitivity Sampling"): leverage scores (exact and
sketched), Lewis weights, ℓp sensitivities, Bernoulli row samples, ℓp regression on all rows
or a sample, and the sample's embedding distortion.
"""

from linalg_core.sampling.lp import LpResult, embedding_distortion, lp_regression
from linalg_core.sampling.sample import SCORES, inclusion_probabilities, sample_rows
from linalg_core.sampling.scores import leverage_scores, lewis_weights, lp_sensitivities

__all__ = ["leverage_scores", "lewis_weights", "lp_sensitivities", "sample_rows", "inclusion_probabilities",
           "SCORES", "lp_regression", "LpResult", "embedding_distortion"]
