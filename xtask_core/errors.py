"""One exception type for problems a user can fix (bad file, bad flag, wrong path).

The CLI prints ``str(err)`` as a single line and exits non-zero; the app shows it in an
error box. Anything else escaping is a bug in xtask, not in the user's input.
"""


class XTaskError(Exception):
    """A user-facing error; its message is one line that says what to do."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))  # keep it to one line
