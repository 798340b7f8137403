# A shim: the package metadata lives in pyproject.toml ([project]). It stays for
# tools that still call `setup.py` (editable installs of older pip).
from setuptools import setup

setup()
