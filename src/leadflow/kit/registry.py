"""Import every model module so ``Base.metadata`` knows all tables (Alembic and tests use this)."""

from __future__ import annotations

from leadflow.campaigns import models as _campaigns
from leadflow.kit.models import Base
from leadflow.leads import models as _leads
from leadflow.pipeline import models as _pipeline
from leadflow.privacy import models as _privacy
from leadflow.routing import models as _routing
from leadflow.security import audit_models as _audit
from leadflow.security import models as _security
from leadflow.security import user_models as _users

__all__ = [
    "Base",
    "_audit",
    "_campaigns",
    "_leads",
    "_pipeline",
    "_privacy",
    "_routing",
    "_security",
    "_users",
]
