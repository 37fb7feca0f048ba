"""What happened to a lead, as a type: :class:`Activity`, and the one mapping of it to a ``lead_activities`` row.

Every writer (capture, the lead service, the worker's handlers, privacy, the scheduler) builds
``Activity`` values and turns them into rows with :meth:`Activity.row`, the only code that knows the
table's columns. A note is free text about a person: :meth:`Activity.note` encrypts it like the lead's
own personal fields (AES-GCM with the field name ``"note"``, base64 in ``metadata["note"]``) and
:func:`note_text` reads it back.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from leadflow.leads.models import ActivityType

if TYPE_CHECKING:
    from leadflow.security.crypto import FieldCipher

ACTOR_LENGTH = 100  # lead_activities.performed_by is VARCHAR(100)


@dataclass(frozen=True, slots=True)
class Activity:
    """One event on one lead: its type, a human description, optional details, who did it and when."""

    lead_id: int
    type: ActivityType
    description: str | None
    at: datetime
    actor: str = "system"
    details: Mapping[str, Any] | None = None

    @classmethod
    def note(cls, cipher: FieldCipher, lead_id: int, text: str, actor: str, at: datetime) -> Activity:
        """A ``note_added`` activity; the note is encrypted (notes often quote the person)."""
        sealed = cipher.encrypt(text, "note")
        assert sealed is not None
        return cls(
            lead_id, "note_added", "Note added", at, actor, {"note": base64.b64encode(sealed).decode()}
        )

    def row(self) -> dict[str, Any]:
        """The ``lead_activities`` row (without its id)."""
        return {
            "lead_id": self.lead_id,
            "activity_type": self.type,
            "description": self.description,
            "performed_by": self.actor[:ACTOR_LENGTH],
            "metadata": dict(self.details) if self.details is not None else None,
            "created_at": self.at,
        }


def note_text(cipher: FieldCipher, details: Mapping[str, Any] | None) -> str | None:
    """The decrypted note of a stored ``note_added`` activity's metadata (None when it holds none)."""
    if not details or "note" not in details:
        return None
    return cipher.decrypt(base64.b64decode(details["note"]), "note")
