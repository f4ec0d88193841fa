"""Exceptions raised by bear_core. Torch-free."""


class BearError(Exception):
    """Base class of every error bear_core raises on purpose."""


class DatasetError(BearError, ValueError):
    """A dataset (arrays or HDF5 file) is malformed; the message names the key."""


class NotBuiltError(BearError, RuntimeError):
    """A method needs the networks, but neither fit, create_impl nor from_json built them."""


class BundleError(BearError):
    """A policy bundle is missing, corrupt, tampered with or does not match its manifest."""
