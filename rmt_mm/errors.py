"""The errors that name a bad input in one line: the tools print their message alone (no
traceback), so each message names the file, key or parameter and what is wrong with it."""


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used, with the reason in one line."""


class ConfigError(ValueError):
    """A config that cannot run, with the offending key and value."""


class DataError(ValueError):
    """Training or test data that cannot be used, named in one line."""


__all__ = ['CheckpointError', 'ConfigError', 'DataError']
