"""Lists of lead fields that more than one module needs, defined once (no imports: the pure cores use it).

``OPTIONAL_FIELDS`` are the form's optional fields: capture and the worker's re-score count which of them
a lead filled in (``ScoreInput.filled_optional``), and the score's form-completion rule asks for all.
"""

from __future__ import annotations

OPTIONAL_FIELDS = ("phone", "company", "service_interest", "urgency", "message", "budget_range", "timeline")
