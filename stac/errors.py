"""The one error type the command line turns into a single clear line on stderr."""


class StacError(Exception):
    """A user-facing error: bad input, an unsupported model or op, a limit exceeded.

    The message is complete on its own; the CLI prints it as one line and exits non-zero.
    """
