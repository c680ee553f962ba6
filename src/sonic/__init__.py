"""sonic: inference as a service for physics (the SONIC pattern) in one Python toolkit."""

__version__ = "0.1.0"

__all__ = ["__version__"]
