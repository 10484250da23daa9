"""What the command line reports as one line instead of a traceback."""


class UsageError(ValueError):
    """A bad command-line value; reported as one line on stderr with exit status 2."""


class TrainingStopped(RuntimeError):
    """Training could not go on (e.g. a NaN loss); reported as one line with exit status 1."""
