"""The `keras-sam` command line, built on the library: settings, run directory, phases, report.

Nothing in the library imports this package; it adds nothing a library user would need to copy.
"""
