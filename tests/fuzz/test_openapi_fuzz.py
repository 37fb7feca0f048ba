"""Schemathesis against the live OpenAPI schema of a running server: no 5xx, responses match the schema.

The number of examples per operation is small in `make test` (FUZZ_EXAMPLES, default 15) and large in
`make fuzz`.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode, checks

from leadflow.app import create_app
from leadflow.config import Settings
from leadflow.migrations.runner import upgrade_async
from tests.conftest import TEST_KEY, run_async

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "15"))


class _Server:
    def __init__(self, app: Any) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.sock = sock
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        self.thread = threading.Thread(
            target=lambda: asyncio.run(self.server.serve(sockets=[sock])), daemon=True
        )

    def __enter__(self) -> _Server:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    db = tmp_path_factory.mktemp("fuzz") / "fuzz.db"
    run_async(upgrade_async(f"sqlite+aiosqlite:///{db}"))
    app_settings = Settings(
        database_url=f"sqlite:///{db}",
        encryption_key=TEST_KEY,
        leadflow_env="test",
        run_worker=False,
        rate_limit_per_ip="1000000/minute",
        rate_limit_per_campaign="1000000/hour",
        lockout_threshold=10**9,
    )
    with _Server(create_app(app_settings)) as server:
        from leadflow.db import create_engine
        from leadflow.security.tokens import create_token

        async def token() -> str:
            engine = create_engine(app_settings)
            try:
                async with engine.begin() as conn:
                    return (await create_token(conn, name="fuzz", role="admin")).token
            finally:
                await engine.dispose()

        auth = {"Authorization": f"Bearer {run_async(token())}"}
        created = httpx.post(
            f"{server.url}/v1/api/campaigns",
            headers=auth,
            json={"id": "nextcloud-installation-2025", "name": "Fuzz", "campaign_type": "service"},
        )
        assert created.status_code == 201
        yield server.url, auth


def test_api_never_5xx_and_matches_its_schema(live: tuple[str, dict[str, str]]) -> None:
    """Every operation, with generated inputs (valid and invalid): no 5xx, answers match the schema."""
    url, auth = live
    api = schemathesis.openapi.from_url(f"{url}/openapi.json")
    failures: list[str] = []
    operations = 0
    for result in api.get_all_operations():
        operation = result.ok()
        operations += 1

        # Valid inputs and deliberately invalid ones (wrong types, out-of-range values, missing fields).
        strategy = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)
        )

        @given(case=strategy)
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=os.environ.get("FUZZ_RANDOM") is None,
            database=None,
        )
        def run(case: Any) -> None:
            case.call_and_validate(
                base_url=url,
                headers={**(case.headers or {}), **auth},  # our valid token, not a generated one
                checks=[
                    checks.not_a_server_error,
                    checks.response_schema_conformance,
                    checks.status_code_conformance,
                ],
            )

        try:
            run()
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(
                f"{operation.method.upper()} {operation.path}: {type(exc).__name__}: {str(exc)[:1500]}"
            )
    assert operations >= 20
    assert not failures, "\n\n".join(failures)


def test_schema_documents_every_operation(live: tuple[str, dict[str, str]]) -> None:
    url, _ = live
    spec = httpx.get(f"{url}/openapi.json").json()
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            assert op.get("summary"), (method, path)
            assert op.get("description"), (method, path)
            codes = set(op["responses"])
            assert any(c.startswith(("2", "303")) for c in codes), (method, path)  # 303: form posts
            if path not in ("/healthz", "/v1/embed.js", "/v1/embed.json"):  # cannot fail
                assert codes & {"400", "401", "404"}, (method, path, codes)
