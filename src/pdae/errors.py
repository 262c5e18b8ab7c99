"""Errors that the command line reports as a message, not a traceback."""


class PdaeError(Exception):
    """A user-facing error: bad input, a missing file, an unreadable image."""


class DataError(PdaeError):
    """A dataset could not be opened or one of its items could not be decoded."""


class CheckpointError(PdaeError):
    """A checkpoint is missing, malformed, or does not match the model it is loaded into."""
