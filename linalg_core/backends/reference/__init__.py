"""Pure-torch reference backend: always available, any device torch supports, the definition
the compiled backends are checked against."""
