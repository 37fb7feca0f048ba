"""How `leadflow serve` runs uvicorn: one process, or N worker processes sharing one socket.

The config class lives at module level because, with ``--workers N``, uvicorn pickles it into each
child process (``multiprocessing`` spawn); each child then sets up the same JSON logs and the same
TLS 1.3-only context as a single process does.
"""

from __future__ import annotations

import inspect
import ssl
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from leadflow.observability.logging import configure_logging


class ServeConfig(uvicorn.Config):
    """uvicorn's config, with HTTPS limited to TLS 1.3 and our JSON logs in every process."""

    def __init__(self, *args: Any, leadflow_log_level: str = "INFO", **kwargs: Any) -> None:
        self.leadflow_log_level = leadflow_log_level
        super().__init__(*args, **kwargs)

    def configure_logging(self) -> None:
        """Called by uvicorn in the parent and again in each worker process."""
        super().configure_logging()
        configure_logging(self.leadflow_log_level)

    def load(self) -> None:
        super().load()
        if self.ssl is not None:
            self.ssl.minimum_version = ssl.TLSVersion.TLSv1_3  # the spec's data-in-transit requirement


def run(config: ServeConfig) -> None:
    """Serve in this process, or under uvicorn's process supervisor when ``config.workers > 1``."""
    if config.workers > 1:
        sock = config.bind_socket()
        if "target" in inspect.signature(Multiprocess).parameters:  # older uvicorn wants the target
            Multiprocess(config, target=uvicorn.Server(config).run, sockets=[sock]).run()  # type: ignore[call-arg]
        else:
            Multiprocess(config, sockets=[sock]).run()
    else:
        uvicorn.Server(config).run()
