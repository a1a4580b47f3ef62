"""nbdock: a folder of Jupyter notebooks as a running, reproducible container."""

__version__ = "0.1.0"
