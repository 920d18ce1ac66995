"""The shared field validators (probsae.validators): what they accept and the message they raise."""

import math

import numpy as np
import pytest

from probsae.errors import ConfigError
from probsae.validators import choice, is_number, number, positive, whole


def test_is_number_takes_finite_reals_only():
    assert is_number(1) and is_number(0.5) and is_number(np.float32(2.0))
    assert not any(is_number(v) for v in (True, math.inf, math.nan, "1", None))


def test_number_and_whole_name_the_field_and_the_value():
    number("lr", 1e-3, positive=True)
    with pytest.raises(ConfigError, match=r"lr must be a finite number > 0, got 0"):
        number("lr", 0, positive=True)
    whole("steps", np.int64(3), 1)
    with pytest.raises(ConfigError, match=r"steps must be an integer ≥ 1, got True"):
        whole("steps", True, 1)
    with pytest.raises(ConfigError, match=r"steps must be a positive integer or None, got 0"):
        whole("steps", 0, 1, "a positive integer or None")


def test_positive_and_choice():
    positive("l1_coeff", 0.0, allow_zero=True)
    with pytest.raises(ConfigError, match="l1_coeff must be a positive number, got 0.0"):
        positive("l1_coeff", 0.0)
    with pytest.raises(ConfigError, match="beta must be a non-negative number, got '1'"):
        positive("beta", "1", allow_zero=True)
    choice("gate", "a", ("a", "b"))
    with pytest.raises(ConfigError, match=r"gate must be one of \('a', 'b'\), got 'c'"):
        choice("gate", "c", ("a", "b"))
