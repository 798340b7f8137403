"""The `sizeagg` command line (`main.py`) and its in-process execution (`run.py`)."""

from .main import main

__all__ = ["main"]
