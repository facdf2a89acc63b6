"""Checks of constructor and config arguments, each failing with one line that names the
argument and the bad value.

Type problems raise ``TypeError``, values out of range ``ValueError``. ``bool`` is refused
wherever a number is expected (``True`` would otherwise pass as 1), and so are NaN and
infinities.
"""
import math
import numbers
from typing import Callable, NamedTuple, Optional, Sequence


def is_int(value: object) -> bool:
    """An integer that is not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """A real number that is not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_finite_number(value: object) -> bool:
    return is_number(value) and math.isfinite(value)


def check_int(name: str, value: object, low: Optional[int] = None,
              high: Optional[int] = None) -> None:
    """``value`` is an int in ``[low, high]`` (either bound may be open-ended)."""
    if not is_int(value):
        raise TypeError(f'{name} must be an int, got {value!r}')
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f'{name} must be in [{"-inf" if low is None else low}, '
                         f'{"inf" if high is None else high}], got {value!r}')


def check_rate(name: str, value: object) -> None:
    """``value`` is a finite number in ``[0, 1)``: a drop probability."""
    if not is_number(value):
        raise TypeError(f'{name} must be a number in [0, 1), got {value!r}')
    if not 0 <= value < 1:  # NaN fails both comparisons
        raise ValueError(f'{name} must be in [0, 1), got {value!r}')


def check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise TypeError(f'{name} must be True or False, got {value!r}')


def check_choice(name: str, value: object, choices: Sequence[str]) -> None:
    if not isinstance(value, str):
        raise TypeError(f'{name} must be one of {tuple(choices)}, got {value!r}')
    if value not in choices:
        raise ValueError(f'{name} must be one of {tuple(choices)}, got {value!r}')


def check_indices(name: str, value: object, count: int) -> list:
    """An int or a non-empty sequence of ints, each in ``[-count, count)``; returns them
    non-negative, sorted and without repeats."""
    indices = [value] if is_int(value) else value
    if isinstance(indices, (str, bytes)) or not isinstance(indices, Sequence) \
            or not all(is_int(i) for i in indices):
        raise TypeError(f'{name} must be an int or a sequence of ints, got {value!r}')
    if not indices or any(not -count <= i < count for i in indices):
        raise ValueError(f'{name} {value!r} must be non-empty and within [0, {count}) '
                         f'(negative indices count from the end)')
    return sorted({i % count for i in indices})


def check_cfg(name: str, value: object, optional: bool = True) -> None:
    """A config dict with a ``type`` (a registered name or a class), or ``None``."""
    if value is None and optional:
        return
    if not isinstance(value, dict) or not isinstance(value.get('type'), (str, type)):
        raise TypeError(f'{name} must be a dict with a "type" key{" or None" if optional else ""}'
                        f', got {value!r}')


class Rule(NamedTuple):
    """What an entry of an arch dict must be: a test and its wording for messages."""

    accepts: Callable[[object], bool]
    singular: str  # 'drop_path_rate must be <singular>'
    plural: str  # 'depths must be 4 <plural>'

    def check(self, name: str, value: object) -> None:
        if not self.accepts(value):
            raise ValueError(f'{name} must be {self.singular}, got {value!r}')


POSITIVE_INT = Rule(lambda v: is_int(v) and v > 0, 'a positive integer', 'positive integers')
POSITIVE = Rule(lambda v: is_finite_number(v) and v > 0, 'a positive finite number',
                'positive finite numbers')
NON_NEGATIVE = Rule(lambda v: is_finite_number(v) and v >= 0, 'a non-negative finite number',
                    'non-negative finite numbers')
BOOL = Rule(lambda v: isinstance(v, bool), 'a bool (True or False)', 'bools (True or False)')
RATE = Rule(lambda v: is_number(v) and 0 <= v < 1, 'in [0, 1)', 'numbers in [0, 1)')
OPTIONAL_POSITIVE = Rule(lambda v: v is None or (is_finite_number(v) and v > 0),
                         'None or positive and finite', 'None or positive finite numbers')
