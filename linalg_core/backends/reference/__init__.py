"""Pure-torch reference backend: always available, any device torch supports, the definition
the compiled backends are checked against."""

from linalg_core.backends.reference import convert, qmatmul, quant, random, sampling, sketch  # noqa: F401
