"""Lead capture (DESIGN.md §3): ``policy`` (the rules, pure), ``service`` (orchestration and the group
commit), ``store`` (one storage protocol, one implementation per backend family), ``http`` (the one
HTTP entry). The names other packages use are re-exported here."""

from leadflow.leads.capture.policy import (
    RESPONSE_TIMES,
    CaptureOutcome,
    PreparedLead,
    prepare,
)
from leadflow.leads.capture.service import CaptureWriter

__all__ = ["RESPONSE_TIMES", "CaptureOutcome", "CaptureWriter", "PreparedLead", "prepare"]
