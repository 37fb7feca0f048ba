"""Runs the pipeline benchmark's vendor fakes in a process of their own.

Real vendors do not share our CPU, so the fakes must not share the worker's interpreter (and its GIL)
either. ``bench/pipeline.py`` starts this script, reads one JSON line with the addresses, and then
sends commands on stdin, one per line; each answer is one JSON line on stdout:

* ``counts`` → ``{"slack": n, "hubspot": n, "hubspot_contacts": n, "smtp": n}`` (accepted requests);
* ``report`` → every accepted delivery as ``[service, received_at, text]`` (``received_at`` is
  ``time.monotonic()``, the same clock in every process on the machine);
* ``quit`` → stops the servers and exits.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fakes.hubspot import FakeHubSpot  # noqa: E402
from tests.fakes.slack import FakeSlack  # noqa: E402
from tests.fakes.smtp import FakeSmtp  # noqa: E402


def main() -> None:
    with FakeSlack() as slack, FakeHubSpot() as hubspot, FakeSmtp() as smtp:
        print(
            json.dumps(
                {
                    "slack_webhook_url": slack.webhook_url,
                    "hubspot_base_url": hubspot.base_url,
                    "smtp_host": smtp.host,
                    "smtp_port": smtp.port,
                }
            ),
            flush=True,
        )
        for line in sys.stdin:
            command = line.strip()
            if command == "counts":
                answer: object = {
                    "slack": len(slack.accepted),
                    "hubspot": len(hubspot.accepted),
                    "hubspot_contacts": len(hubspot.contacts),
                    "smtp": len(smtp.messages),
                }
            elif command == "report":
                answer = [
                    *(["slack", r.received_at, r.body.decode(errors="replace")] for r in slack.accepted),
                    *(["hubspot", r.received_at, r.body.decode(errors="replace")] for r in hubspot.accepted),
                    *(["smtp", m.received_at, m.message().as_string()] for m in smtp.messages),
                ]
            elif command == "quit":
                break
            else:
                answer = {"error": f"unknown command {command!r}"}
            print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
