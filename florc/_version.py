"""The version, alone: importing it loads nothing else of florc."""

__version__ = "0.1.0"
