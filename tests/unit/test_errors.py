"""errors.py: the message helpers every layer uses."""

from __future__ import annotations

from kserve_torchserve.errors import shown


def test_messages_show_a_plain_name_and_only_describe_anything_else() -> None:
    assert shown("v2.0") == "'v2.0'"
    assert shown("<script>" * 10) == "the one given"
    assert shown(12.5) == "a float"
