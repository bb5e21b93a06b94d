"""The wattwise version (its own module: nothing imports the package __init__ for it)."""

__version__ = "0.1.0"
