"""sonic: inference as a service for physics (the SONIC pattern) in one Python toolkit."""

from sonic import _compiled

__version__ = "0.1.0"

__all__ = ["__version__"]

# The hot path may be compiled (setup.py); load a build only while it matches its source.
_compiled.install()
