"""The errors rnnlab raises for input it cannot use: each message is one sentence saying what is
wrong and what to do. They are ``ValueError``s, so a caller can catch them all at once."""

from __future__ import annotations


class DataError(ValueError):
    """The data cannot be used as it is; the message says why and what to do."""


class NotACSVError(DataError):
    pass


class NoDateColumnError(DataError):
    pass


class DateFormatError(DataError):
    """The date column mixes formats, so no single reading of it is right."""


class DuplicateDatesError(DataError):
    pass


class NoNumericFeaturesError(DataError):
    pass


class SeriesChoiceError(DataError):
    """The file holds several series (stations, cities) and none was chosen.

    column: the column naming the series; values: its values, in the file's order.
    """

    def __init__(self, message: str, column: str, values: list[str]):
        super().__init__(message)
        self.column, self.values = column, list(values)


class FilterError(DataError):
    """A --where filter names a column or a value the file does not have."""


class TooLargeError(DataError):
    """The file is larger (in bytes or columns) than rnnlab reads."""


class TargetMissingError(DataError):
    pass


class ConstantColumnError(DataError):
    pass


class TooFewRowsError(DataError):
    pass


class NonFiniteValuesError(DataError):
    pass


class LeakError(DataError):
    pass


class SettingError(DataError):
    """A setting (lookback, horizon, split shares, features) that cannot work."""


class WeightsError(ValueError):
    """A weights file that cannot be used; the message says why."""
