"""The one exception type whose message is shown to users as a single sentence."""


class PkmodelError(Exception):
    """A user-facing error: the message names the file, key or value at fault.

    The CLI prints it as one line and exits with code 2, without a traceback.
    """
