"""certgate: network-access PKI in one process."""

__version__ = "0.1.0"
