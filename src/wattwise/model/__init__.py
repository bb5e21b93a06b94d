"""The BUTTER-E energy model (Tripp et al. 2024): pure functions, no I/O, no frameworks."""
