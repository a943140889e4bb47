"""The one exception type that means "the user gave bad input".

CLIs turn an :class:`AloeError` into a one-line message and exit code 2; anything else is a bug
and keeps its traceback.
"""


class AloeError(Exception):
    """Bad input or a state the user can fix: shown as one line, exit code 2, nothing lost."""
