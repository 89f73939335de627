"""cmpipe: galaxy-cluster gas and dark-matter mass maps from SZ and X-ray images.

Importing :mod:`cmpipe` is cheap and has no side effects: no heavy imports, no logging
set-up, no directories created. Submodules are imported explicitly where they are needed.
"""

__version__ = "0.1.0"
