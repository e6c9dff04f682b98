"""tallyd: a self-hosted event counter."""

__version__ = "0.1.0"
