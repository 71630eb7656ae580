"""One small exception hierarchy; each message names the input at fault and the fix."""


class RagError(Exception):
    """Base class: a problem the user can fix, reported as one line without a traceback."""


class InputError(RagError):
    """A question, file or path that cannot be used."""


class IndexMissingError(RagError):
    """No index where one was expected."""


class IndexCorruptError(RagError):
    """An index whose files cannot be read or do not agree with each other."""


class IndexMismatchError(RagError):
    """An index built with other settings (embedder, chunking, format version) than the current ones."""


class ModelError(RagError):
    """A missing, corrupt or unusable model."""


class GoldError(RagError):
    """A gold question file with a bad line."""
