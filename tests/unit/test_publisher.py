"""The publisher's own checks, before anything reaches Kafka."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bus import parse_alert
from bus.errors import ValidationError
from tests.conftest import REPO

EXAMPLES = REPO / "examples" / "alerts"


@pytest.mark.parametrize(
    ("path", "wrong", "came"),
    [
        (("person", "date_of_birth"), "17.02.1994", "str of length 10"),
        (("person", "family_name"), 19940217, "int"),
        (("person", "given_names"), ["Emir", "E."], "list of length 2"),
    ],
)
def test_parse_alert_names_the_field_and_the_kind_of_value_never_the_value(
    path: tuple[str, str], wrong: Any, came: str
) -> None:
    data = json.loads((EXAMPLES / "foreign-fighter-travel.json").read_text())
    data[path[0]][path[1]] = wrong
    with pytest.raises(ValidationError) as caught:
        parse_alert(data, "foreign-fighter-travel")
    message = str(caught.value)
    assert caught.value.field == ".".join(path)
    assert f"field {'.'.join(path)}: " in message
    assert f"(got {came})" in message
    # Personal data stays out of the message, and so out of logs.
    assert "1994" not in message
    assert "Emir" not in message
