"""The one exception the command line turns into a one-line message (no traceback)."""


class VitaeError(Exception):
    """Bad input or state that the user can fix; the message names the problem and the remedy."""


class DivergedError(VitaeError):
    """Training produced a non-finite loss; the run records it and stops."""


class BusyError(VitaeError):
    """Another process holds the run folder's lock."""
