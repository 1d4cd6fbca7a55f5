"""Sketched least squares (sketch-and-solve, sketch-and-precondition with iterative
refinement) and the ℓ∞ error report of "A Nearly-Optimal Bound for Fast Regression with ℓ∞
Guarantee". Built on :mod:`linalg_core.sketch`.
"""

from linalg_core.regression.lsqr import LSQRResult, lsqr
from linalg_core.regression.lstsq import LstsqResult, lstsq
from linalg_core.regression.report import LinfReport, linf_report

__all__ = ["lstsq", "LstsqResult", "linf_report", "LinfReport", "lsqr", "LSQRResult"]
