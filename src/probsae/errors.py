"""Exception types. Every error probsae raises on bad input is a subclass of ``ProbSAEError``
(itself a ``ValueError``) and its message names the problem and the offending value."""


class ProbSAEError(ValueError):
    """Base class of probsae's input and configuration errors."""


class ConfigError(ProbSAEError):
    """An unknown architecture, an unknown or invalid hyperparameter, an inconsistent config."""


class InputError(ProbSAEError):
    """Activations of the wrong shape or dtype, or containing NaN/inf."""


class SAEFileError(ProbSAEError):
    """A saved SAE or checkpoint that is missing, corrupt or does not match its config."""


class FileIOError(ProbSAEError):
    """A file or directory that cannot be read or written: permission denied, disk full, a file
    where a directory should be, invalid UTF-8, JSON of the wrong type. The message names the path
    and the cause."""


class TrainingDivergedError(ProbSAEError):
    """The training loss or the weights became NaN/inf; the last good checkpoint is kept."""


class MissingExtraError(ProbSAEError):
    """A feature needs an optional extra that is not installed; the message names the pip command."""


class RunInUseError(FileIOError):
    """A run directory that another probsae process is writing (it holds the directory's lock);
    the message names that process (pid, host, start time, command)."""
