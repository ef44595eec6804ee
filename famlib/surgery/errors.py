"""The one error type of weight surgery."""

from famlib.errors import FamlibError


class SurgeryError(FamlibError, ValueError):
    """Inputs or options that a weight-surgery operation refuses; the message names files, tensors and values."""
