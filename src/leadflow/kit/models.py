"""Declarative base and portable column types shared by every domain's models."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any, TypeAlias, TypeVar, cast

from sqlalchemy import BigInteger, ColumnElement, DateTime, Integer, MetaData, Row, Table
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BIGINT where the database has it; SQLite only auto-increments an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend (MySQL DATETIME(6) has no zone; store UTC)."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "mysql":
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        if dialect.name == "postgresql":
            return dialect.type_descriptor(DateTime(timezone=True))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


# A result row of any shape (SQLAlchemy 2.1 types rows by their column tuple).
AnyRow: TypeAlias = "Row[*tuple[Any, ...]]"


def table_of(model: type[Base]) -> Table:
    """The Core table behind a mapped class (typed, for SQL in repositories)."""
    return cast(Table, model.__table__)


R = TypeVar("R")


def columns_of(row_type: type[Any], table: Table) -> list[ColumnElement[Any]]:
    """The columns of ``table`` named by the fields of the dataclass ``row_type``, in field order (a
    field the table lacks raises KeyError when the repository module is imported)."""
    return [table.c[f.name] for f in fields(row_type)]


def rows_as(row_type: type[R], rows: Iterable[Any]) -> list[R]:
    """Typed rows: each result row (selected with :func:`columns_of`) as a ``row_type``."""
    return [row_type(**row._mapping) for row in rows]
