"""The one error every data reader raises for a file or folder it can't use."""


class DataError(ValueError):
    """A data file or folder can't be used; the message names it and says why."""
