"""The one exception type for every user mistake."""


class PoolError(ValueError):
    """A user mistake: a bad parameter, an input that does not fit, a file that cannot be read.

    The message is one line that names the culprit and the rule it broke.
    """
