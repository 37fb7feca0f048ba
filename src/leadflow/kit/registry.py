"""Import every model module so ``Base.metadata`` knows all tables (Alembic and tests use this)."""

from __future__ import annotations

from leadflow.campaigns import models as _campaigns
from leadflow.kit.models import Base
from leadflow.leads import models as _leads
from leadflow.pipeline import models as _pipeline
from leadflow.security import models as _security

__all__ = ["Base", "_campaigns", "_leads", "_pipeline", "_security"]
