"""fdpkit: FDP micro-expression recognition, reproducible and honest."""

__version__ = "0.1.0"
