"""Float64 NumPy/SciPy references, written independently of the code under test."""
