"""bot.durations: the durations people write in config and chat, and their short form."""
from __future__ import annotations

from datetime import timedelta

import pytest

from bot.durations import DurationError, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("5m", timedelta(minutes=5)),
        ("1h", timedelta(hours=1)),
        ("30d", timedelta(days=30)),
        ("2w", timedelta(weeks=2)),
        ("500ms", timedelta(milliseconds=500)),
        ("1.5h", timedelta(minutes=90)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        (" 5M ", timedelta(minutes=5)),
        ("0s", timedelta(0)),
    ],
)
def test_parse_accepts(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("5", "'5' is not a duration (use 5m)"),
        ("5 minutes", "'5 minutes' is not a duration (use 5m)"),
        ("", "'' is not a duration (use 5m)"),
        ("   ", "'   ' is not a duration (use 5m)"),
        ("-5m", "'-5m' is not a duration (use 5m)"),
        ("m", "'m' is not a duration (use 5m)"),
        ("5x", "'5x' is not a duration (use 5m)"),
        ("1h 30m", "'1h 30m' is not a duration (use 5m)"),
        ("5m!", "'5m!' is not a duration (use 5m)"),
        (True, "True is not a duration (use 5m)"),
        (False, "False is not a duration (use 5m)"),
        (None, "None is not a duration (use 5m)"),
        ([1], "[1] is not a duration (use 5m)"),
        (5, "5 has no unit (use 5s or 5m)"),
        (2.5, "2.5 has no unit (use 2.5s or 2.5m)"),
    ],
)
def test_parse_refuses_with_a_sentence(value, message):
    with pytest.raises(DurationError) as err:
        parse_duration(value)
    assert str(err.value) == message


def test_duration_error_is_a_value_error():
    # pydantic turns a ValueError raised by a validator into a located config problem
    assert issubclass(DurationError, ValueError)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "-"),
        (timedelta(0), "0s"),
        (timedelta(seconds=4.5), "4.5s"),
        (timedelta(seconds=1), "1s"),
        (timedelta(seconds=45), "45s"),
        (timedelta(seconds=90), "1m 30s"),
        (timedelta(seconds=250), "4m 10s"),
        (timedelta(minutes=5), "5m"),
        (timedelta(hours=1), "1h"),
        (timedelta(hours=2, minutes=5, seconds=3), "2h 5m"),   # at most two parts
        (timedelta(days=3, hours=4, minutes=1), "3d 4h"),
        (timedelta(days=30), "30d"),
        (timedelta(seconds=-90), "-1m 30s"),
        (60, "1m"),                                            # plain seconds accepted
        (9.96, "10s"),
        (125.4, "2m 5s"),
    ],
)
def test_format(value, expected):
    assert format_duration(value) == expected


@pytest.mark.parametrize("text", ["90s", "5m", "1h", "30d", "1h30m", "4m10s"])
def test_format_then_parse_round_trips(text):
    td = parse_duration(text)
    assert parse_duration(format_duration(td).replace(" ", "")) == td
