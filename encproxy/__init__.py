"""encproxy: an encrypting S3 gateway."""

__version__ = "0.1.0"
