"""Browser-test helpers for the workspace: a live server with staff accounts, Chromium, axe-core.

Import the fixtures into a test module (``from tests.web.browser import live, browser, page_for``).
Without ``/usr/bin/chromium`` or Playwright the tests skip saying why; with ``CI`` set they fail.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from leadflow.app import create_app
from leadflow.config import Settings
from leadflow.migrations.runner import upgrade_async
from tests.conftest import TEST_KEY, run_async
from tests.forms.test_embed_browser import ARTEFACTS, WAIT_MS, _require_browser, launched_chromium
from tests.fuzz.test_openapi_fuzz import _Server
from tests.web.conftest import PASSWORD

AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
PHONE = {"width": 375, "height": 812}
ROLES = ("admin", "manager", "sales", "analyst")


@dataclass
class Live:
    url: str
    settings: Settings

    def email(self, role: str) -> str:
        return f"{role}@example.com"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A real uvicorn server on 127.0.0.1 with one staff account per role (password ``PASSWORD``)."""
    _require_browser()
    db = tmp_path_factory.mktemp("web") / "web.db"
    run_async(upgrade_async(f"sqlite+aiosqlite:///{db}"))
    settings = Settings(
        database_url=f"sqlite:///{db}",
        encryption_key=TEST_KEY,
        leadflow_env="test",
        run_worker=False,
        rate_limit_per_ip="100000/minute",
        lockout_threshold=100000,
        gc_freeze=False,
    )

    async def accounts() -> None:
        from leadflow.db import create_engine
        from leadflow.security.users import create_user

        engine = create_engine(settings)
        try:
            async with engine.begin() as conn:
                for role in ROLES:
                    await create_user(
                        conn,
                        email=f"{role}@example.com",
                        name=f"{role.title()} User",
                        role=role,
                        password=PASSWORD,
                    )
        finally:
            await engine.dispose()

    run_async(accounts())
    with _Server(create_app(settings)) as server:
        yield Live(server.url, settings)


@pytest.fixture(scope="module")
def browser(live: Live) -> Iterator[Any]:
    with launched_chromium() as chromium:
        yield chromium


@pytest.fixture
def page_for(browser: Any) -> Iterator[Callable[..., Any]]:
    """``page_for(viewport=PHONE)``: a page in a fresh context (cookies of its own); CSP bypassed only
    so that axe-core can be injected (the app's own pages never need it)."""
    contexts: list[Any] = []

    def make(**options: Any) -> Any:
        context = browser.new_context(bypass_csp=True, **options)
        context.set_default_timeout(WAIT_MS)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def sign_in(page: Any, live: Live, role: str, next: str = "/") -> None:
    page.goto(f"{live.url}/login?next={next}")
    page.get_by_label("Email").fill(live.email(role))
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def screenshot(page: Any, name: str) -> Path:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTEFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def axe_violations(page: Any, impacts: tuple[str, ...] = ("serious", "critical")) -> list[dict[str, Any]]:
    """axe-core's violations of the page at these impacts (empty: none)."""
    page.add_script_tag(path=str(AXE))
    found: list[dict[str, Any]] = page.evaluate(
        """async () => (await axe.run(document)).violations.map(
            (v) => ({id: v.id, impact: v.impact, help: v.help, targets: v.nodes.map((n) => n.target.join(' '))}))"""
    )
    return [v for v in found if v["impact"] in impacts]
