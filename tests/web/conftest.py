"""Workspace fixtures: staff accounts and a signed-in browser-like client (httpx over ASGI)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx
import pytest

from leadflow.security import users
from tests.conftest import Harness

PASSWORD = "correct horse battery staple"


@dataclass
class Staff:
    email: str
    password: str
    role: str


async def make_user(harness: Harness, role: str, email: str | None = None, **kwargs: str) -> Staff:
    email = email or f"{role}@example.com"
    async with harness.engine.begin() as conn:
        await users.create_user(
            conn, email=email, name=f"{role.title()} User", role=role, password=PASSWORD, **kwargs
        )
    return Staff(email, PASSWORD, role)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, staff: Staff, next: str = "/") -> httpx.Response:
    page = await client.get("/login")
    if page.status_code == 303:  # signed in already: sign in again (a form of the session's pages)
        page = await client.get("/")
    assert page.status_code == 200, page.text
    return await client.post(
        "/login",
        data={
            "email": staff.email,
            "password": staff.password,
            "next": next,
            "csrf_token": csrf_of(page.text),
        },
    )


@pytest.fixture
async def sales(harness: Harness) -> Staff:
    return await make_user(harness, "sales")


@pytest.fixture
async def admin_user(harness: Harness) -> Staff:
    return await make_user(harness, "admin")
