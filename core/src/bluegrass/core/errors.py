"""The one exception type the command lines turn into a one-line error and a non-zero exit."""


class BluegrassError(Exception):
    """A failure the user can act on; its message is one line that says what and where."""

    exit_code = 1


class ConfigError(BluegrassError):
    """A configuration file that cannot be used; the message names the file and the key."""

    exit_code = 2


class UsageError(BluegrassError):
    """Bad input on the command line: an unknown user or segment, a bad date, a bad target."""

    exit_code = 2
