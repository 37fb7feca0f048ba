"""``leadflow members`` and ``leadflow rules``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

members_app = typer.Typer(help="Manage the team members who receive leads.", no_args_is_help=True)
rules_app = typer.Typer(help="Manage ordered routing rules.", no_args_is_help=True)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


def _validate(model: type[M], data: dict[str, Any]) -> M:
    """Validate CLI input with the API's schema; a bad value exits 2 naming the field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(map(str, first["loc"])) or "input"
        typer.echo(f"invalid {field}: {str(first['msg']).removeprefix('Value error, ')}", err=True)
        raise typer.Exit(2) from exc


def _in_transaction(work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """Run ``work`` in one committed transaction (the CLI command is the boundary)."""
    from leadflow.cli import _run, _settings  # the root CLI imports this module

    async def run(engine: AsyncEngine) -> T:
        async with engine.begin() as conn:
            return await work(conn)

    return _run(_settings(), run)


def _parse_hours(hours: str) -> tuple[str, str]:
    start, sep, end = hours.partition("-")
    if not sep:
        typer.echo("invalid --hours: use START-END, e.g. 09:00-17:00", err=True)
        raise typer.Exit(2)
    return start.strip(), end.strip()


def _parse_days(days: str) -> list[str]:
    return [part.strip() for part in days.split(",") if part.strip()]


@members_app.command("add")
def members_add(
    name: Annotated[str, typer.Option(help="Display name")],
    email: Annotated[str, typer.Option(help="E-mail (unique; notifications go here)")],
    phone: Annotated[str | None, typer.Option(help="International number for SMS, e.g. +14155550100")] = None,
    service: Annotated[
        list[str] | None, typer.Option("--service", help="Service handled (repeat; none: any)")
    ] = None,
    region: Annotated[
        list[str] | None,
        typer.Option("--region", help='Country "DE" or subdivision "US-CA" (repeat; none: any)'),
    ] = None,
    capacity: Annotated[int, typer.Option(help="Most open leads at once")] = 50,
    weight: Annotated[int, typer.Option(help="Round-robin share (2 = twice the leads of 1)")] = 1,
    timezone: Annotated[
        str | None, typer.Option(help="IANA time zone of the working hours, e.g. Europe/Berlin")
    ] = None,
    hours: Annotated[str | None, typer.Option(help="Working hours START-END, e.g. 09:00-17:00")] = None,
    days: Annotated[str, typer.Option(help="Working days, 0 = Monday ... 6 = Sunday")] = "0,1,2,3,4",
) -> None:
    """Add a team member (without --timezone/--hours: always available)."""
    from leadflow.routing import service as svc
    from leadflow.routing.schemas import MemberCreate
    from leadflow.security.audit import CLI, record

    if (timezone is None) != (hours is None):
        typer.echo("--timezone and --hours go together", err=True)
        raise typer.Exit(2)
    data: dict[str, Any] = {
        "name": name,
        "email": email,
        "phone": phone,
        "services": service or [],
        "regions": region or [],
        "capacity": capacity,
        "weight": weight,
    }
    if timezone is not None and hours is not None:
        start, end = _parse_hours(hours)
        data["working_hours"] = {"timezone": timezone, "days": _parse_days(days), "start": start, "end": end}
    body = _validate(MemberCreate, data)

    async def work(conn: AsyncConnection) -> Any:
        created = await svc.create_member(conn, body)
        await record(conn, CLI, "team_member.create", "team_member", str(created.id))
        return created

    created = _in_transaction(work)
    typer.echo(f"added team member #{created.id} {created.email}")


@members_app.command("list")
def members_list() -> None:
    """List team members as JSON lines (with their open leads)."""
    from leadflow.routing import service as svc

    for member in _in_transaction(lambda conn: svc.list_members(conn)).items:
        typer.echo(member.model_dump_json())


@members_app.command("deactivate")
def members_deactivate(email: Annotated[str, typer.Option(help="The member's e-mail")]) -> None:
    """Stop routing new leads to a member (their open leads stay theirs)."""
    from leadflow.routing import service as svc
    from leadflow.security.audit import CLI, record

    async def work(conn: AsyncConnection) -> Any:
        member = await svc.deactivate_member(conn, email)
        await record(conn, CLI, "team_member.update", "team_member", str(member.id), {"fields": ["active"]})
        return member

    member = _in_transaction(work)
    typer.echo(f"deactivated team member #{member.id} {member.email} ({member.open_leads} open leads)")


@rules_app.command("add")
def rules_add(
    name: Annotated[str, typer.Option(help="Unique rule name")],
    member_email: Annotated[str, typer.Option(help="E-mail of the team member who gets matching leads")],
    service: Annotated[list[str] | None, typer.Option("--service", help="Service interest (repeat)")] = None,
    grade: Annotated[list[str] | None, typer.Option("--grade", help="Lead grade A-D (repeat)")] = None,
    min_score: Annotated[int | None, typer.Option(help="Lowest lead score (inclusive)")] = None,
    country: Annotated[list[str] | None, typer.Option("--country", help="ISO country code (repeat)")] = None,
    region: Annotated[
        list[str] | None, typer.Option("--region", help='Subdivision such as "US-CA" (repeat)')
    ] = None,
    campaign: Annotated[list[str] | None, typer.Option("--campaign", help="Campaign id (repeat)")] = None,
    position: Annotated[int, typer.Option(help="Evaluation order; lower runs first")] = 100,
) -> None:
    """Add a routing rule; all given conditions must hold (none: every lead matches)."""
    from leadflow.routing import service as svc
    from leadflow.routing.schemas import RuleConditions, RuleCreate
    from leadflow.security.audit import CLI, record

    conditions = _validate(
        RuleConditions,
        {
            "campaign_ids": campaign or None,
            "services": service or None,
            "grades": grade or None,
            "min_score": min_score,
            "countries": country or None,
            "regions": region or None,
        },
    )

    async def work(conn: AsyncConnection) -> Any:
        member = await svc.member_by_email_or_404(conn, member_email)
        body = _validate(
            RuleCreate,
            {"name": name, "position": position, "conditions": conditions, "member_id": int(member.id)},
        )
        created = await svc.create_rule(conn, body)
        await record(conn, CLI, "routing_rule.create", "routing_rule", str(created.id))
        return created

    created = _in_transaction(work)
    typer.echo(f"added routing rule #{created.id} '{created.name}' -> {created.member_email}")


@rules_app.command("list")
def rules_list() -> None:
    """List routing rules in evaluation order as JSON lines."""
    from leadflow.routing import service as svc

    for rule in _in_transaction(lambda conn: svc.list_rules(conn)).items:
        typer.echo(rule.model_dump_json())
