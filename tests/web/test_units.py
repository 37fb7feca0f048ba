"""Pure helpers of the workspace: where sign-in may return to, the current navigation entry, asset names."""

from __future__ import annotations

import pytest

from leadflow.web.assets import hashed_name
from leadflow.web.auth import safe_next
from leadflow.web.render import NAV, current_nav


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("/", "/"),
        ("/leads?status=new&grade=A", "/leads?status=new&grade=A"),
        ("/leads/lead_0123456789ab", "/leads/lead_0123456789ab"),
        (None, "/"),
        ("", "/"),
        ("leads", "/"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("javascript:alert(1)", "/"),
        ("/x\r\nSet-Cookie: a=b", "/"),
        ("/" + "a" * 2001, "/"),
    ],
)
def test_safe_next(given: str | None, expected: str) -> None:
    assert safe_next(given) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/", "/"),
        ("/leads", "/leads"),
        ("/leads/lead_0123456789ab", "/leads"),
        ("/leads/new", "/leads/new"),
        ("/leads/import", "/leads/import"),
        ("/campaigns/spring/edit", "/campaigns"),
        ("/leadsx", None),
        ("/login", None),
    ],
)
def test_current_nav_is_the_longest_matching_entry(path: str, expected: str | None) -> None:
    assert current_nav(list(NAV), path) == expected


def test_hashed_names_follow_the_content() -> None:
    one = hashed_name("vendor/htmx/htmx.min.js", b"a")
    assert (
        one.startswith("vendor/htmx/htmx.min.")
        and one.endswith(".js")
        and len(one) == len("vendor/htmx/htmx.min.js") + 13
    )
    assert hashed_name("vendor/htmx/htmx.min.js", b"b") != one
    assert hashed_name("vendor/htmx/htmx.min.js", b"a") == one
