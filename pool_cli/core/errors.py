"""The one exception type for every user mistake, and how its messages stay one line."""

import re


class PoolError(ValueError):
    """A user mistake: a bad parameter, an input that does not fit, a file that cannot be read.

    The message is one line that names the culprit and the rule it broke.
    """


_LINE_BREAKS = re.compile(r"[ \t]*[\r\n\t\v\f]+[ \t]*")


def one_line(message: str) -> str:
    """``message`` on one line: its line breaks and tabs (an OS error's text, a file name
    holding one) become single spaces; runs of plain spaces stay as they are, as in a name.

    >>> one_line("a  b.png: not\\nan image")
    'a  b.png: not an image'
    """
    return _LINE_BREAKS.sub(" ", message)
