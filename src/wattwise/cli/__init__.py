"""The ``wattwise`` command line."""
