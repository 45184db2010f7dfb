"""Errors a user can act on.

Everything the user can fix (bad files, bad options, a damaged checkpoint) is raised as a
`LatentsweepError`; the CLI prints its message on one line and exits with its `exit_code`.
Anything else is a bug and keeps its traceback.
"""


class LatentsweepError(Exception):
    exit_code = 1


class ConfigError(LatentsweepError):
    """An option, a config file or a combination of them is invalid."""

    exit_code = 2


class DataError(LatentsweepError):
    """A data file is missing, damaged or not what it claims to be."""

    exit_code = 2


class CheckpointError(LatentsweepError):
    """A checkpoint is missing, damaged or belongs to another model."""

    exit_code = 2


class TrainingDiverged(LatentsweepError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""

    exit_code = 3


class PrefixUnavailable(LatentsweepError):
    """A prefix of an ordered model cannot be evaluated: the model it is the start of did not finish training."""

    exit_code = 3
