"""Public identifiers."""

from __future__ import annotations

import re
import uuid

LEAD_ID_RE = re.compile(r"^lead_[0-9a-f]{12}$")


def new_lead_ids() -> tuple[str, str]:
    """A (uuid, public lead id) pair; the public id is ``lead_`` + 12 hex characters."""
    value = uuid.uuid4()
    return str(value), "lead_" + value.hex[:12]
