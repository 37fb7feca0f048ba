"""`make bench-workspace`: latency of the workspace pages, signed in through the real login form.

What it does (all on 127.0.0.1, bounded: ~10 s per measured run):

1. a temporary directory with a fresh SQLite database and ENCRYPTION_KEY (bench/run.py's clean
   environment), ``leadflow migrate``, an admin API token (to look up lead ids), and a staff account
   created with ``leadflow users create --password-stdin``;
2. seeds the campaign ``big`` with 100 000 leads through the real capture code (bench/seed.py), and with
   ``--analytics-leads 1000000`` a second campaign ``more`` with the rest of the million for the
   all-campaigns analytics page (that seed takes a long time: it is off by default);
3. starts ``leadflow serve`` (one process, no in-process worker), signs the user in by GET /login
   (pre-session cookie and CSRF token) and POST /login, and keeps the ``lf_session`` cookie;
4. checks that every page answers 200 with that cookie (a page that answers 404 is not built yet on this
   branch and is skipped, saying so), then drives each page with wrk (bench/wrk/paths.lua) at each
   ``--concurrency`` and prints p50/p95/p99 and PASS/MISS against its target at the highest one.

Pages (``--pages`` chooses; the lead pages come with the lead-pages branch):
  inbox ``/`` (the admin's "All leads"), inbox-sales ``/`` signed in as a salesperson whose routing
  member has every fifth lead (20 000 of 100 000), 1 in 10 of them with a follow-up overdue, leads
  ``/leads``, leads-filtered ``/leads?status=new&grade=A``, lead ``/leads/{lead_id}`` (2 000 different
  leads in turn), analytics ``/analytics`` (all campaigns, last 30 days).

``--keep`` keeps the work directory (database and its throwaway key); ``--reuse DIR`` measures such a
directory again without seeding (migrating it first, so a branch's new migration applies).

A report, not a test: exit status 0 whether or not the targets are met.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# bench/ is not a package: its modules are imported by path.
from loadgen import LoadResult, compose_script, ensure_wrk, run_wrk, wrk_version
from run import (
    BENCH,
    HOST,
    LEADFLOW,
    ROOT,
    bench_env,
    collect_lead_ids,
    git_state,
    run_cli,
    seed_big,
    start_server,
    stop_server,
    wait_idle,
)

EMAIL = "bench-admin@example.org"
SALES_EMAIL = "bench-rep@example.org"  # a salesperson's account and routing member
PASSWORD = "bench workspace password 2025"  # noqa: S105 - a throwaway account in a temporary database
LEAD_IDS = 2000
SALES_SHARE = 5  # the salesperson has every fifth lead ...
DUE_SHARE = 20  # ... and two in DUE_SHARE of theirs have a follow-up due (a day or an hour overdue)


@dataclass(frozen=True)
class Page:
    name: str
    path: str  # {lead_id}: a different existing lead on every request
    target_ms: float  # p95
    note: str = ""
    user: str = EMAIL  # who is signed in


PAGES = {
    "inbox": Page("inbox", "/", 150.0),
    "inbox-sales": Page("inbox-sales", "/", 150.0, "a salesperson with 20 000 leads", SALES_EMAIL),
    "leads": Page("leads", "/leads", 150.0),
    "leads-filtered": Page("leads-filtered", "/leads?status=new&grade=A", 150.0),
    "lead": Page("lead", "/leads/{lead_id}", 100.0),
    "analytics": Page("analytics", "/analytics", 300.0, "target at 1 000 000 leads"),
}


# -- signing in through the form ---------------------------------------------------------------------


def _cookies(response: http.client.HTTPResponse) -> dict[str, str]:
    found = {}
    for header in response.headers.get_all("Set-Cookie") or []:
        name, _, rest = header.partition("=")
        found[name.strip()] = rest.split(";", 1)[0]
    return found


def _request(
    port: int, method: str, path: str, cookies: dict[str, str], body: str | None = None
) -> tuple[int, dict[str, str], str, str]:
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}
    if body is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        text = response.read().decode("utf-8", "replace")
        return response.status, _cookies(response), response.headers.get("Location", ""), text
    finally:
        conn.close()


def sign_in(port: int, email: str = EMAIL) -> str:
    """The ``lf_session`` cookie value after GET /login and POST /login (the form a person uses)."""
    status, cookies, _, page = _request(port, "GET", "/login", {})
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    if status != 200 or not found:
        raise SystemExit(f"GET /login answered {status} without a form")
    form = urllib.parse.urlencode(
        {"email": email, "password": PASSWORD, "next": "/", "csrf_token": found.group(1)}
    )
    status, new, _, text = _request(port, "POST", "/login", cookies, form)
    if status != 303 or "lf_session" not in new:
        raise SystemExit(f"sign-in failed ({status}): {text[:300]}")
    return new["lf_session"]


def create_user(env: dict[str, str], email: str = EMAIL, role: str = "admin", *more: str) -> None:
    done = subprocess.run(
        [
            str(LEADFLOW),
            "users",
            "create",
            "--email",
            email,
            "--name",
            f"Bench {role.title()}",
            "--role",
            role,
            "--password-stdin",
            *more,
        ],
        input=PASSWORD,
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"`leadflow users create` failed: {done.stderr.strip()}")


def give_sales_leads(env: dict[str, str], db: Path) -> str:
    """A routing member and a sales account linked to it; every SALES_SHARE-th lead assigned to it (as
    routing would: ``assigned_to`` and ``assigned_member_id``), DUE_SHARE of those with a follow-up due.

    Set in SQL on the bench's own SQLite file: routing 20 000 leads through the worker would take longer
    than the whole benchmark, and what is measured is the reading of them."""
    run_cli(env, "members", "add", "--name", "Bench Rep", "--email", SALES_EMAIL, "--capacity", "100000")
    create_user(env, SALES_EMAIL, "sales", "--member-email", SALES_EMAIL)
    with sqlite3.connect(db) as conn:
        (member,) = conn.execute("SELECT id FROM team_members WHERE email = ?", (SALES_EMAIL,)).fetchone()
        conn.execute(
            "UPDATE leads SET assigned_to = ?, assigned_member_id = ? WHERE id % ? = 0",
            (SALES_EMAIL, member, SALES_SHARE),
        )
        # Follow-ups due a day and an hour ago, stored as naive UTC like the app does on SQLite.
        now = datetime.now(UTC).replace(tzinfo=None)
        for shift, offset in ((timedelta(days=1), 0), (timedelta(hours=1), SALES_SHARE)):
            conn.execute(
                "UPDATE leads SET follow_up_date = ? WHERE id % ? = ?",
                ((now - shift).isoformat(sep=" "), SALES_SHARE * DUE_SHARE, offset),
            )
        assigned = conn.execute("SELECT count(*) FROM leads WHERE assigned_to = ?", (SALES_EMAIL,)).fetchone()
    return f"{assigned[0]} leads assigned to the salesperson"


# -- the runs ----------------------------------------------------------------------------------------


def seed_more(env: dict[str, str], leads: int, workdir: Path) -> float:
    started = time.monotonic()
    with (workdir / "seed-more.log").open("w") as log:
        command = [
            sys.executable,
            str(BENCH / "seed.py"),
            "--campaign-id",
            "more",
            "--leads",
            str(leads),
            "--workflow",
            "0",
        ]
        done = subprocess.run(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise SystemExit(f"seeding 'more' failed:\n{(workdir / 'seed-more.log').read_text()[-2000:]}")
    return time.monotonic() - started


def measure(args: argparse.Namespace, workdir: Path) -> tuple[list[LoadResult], list[str], dict[str, str]]:
    env = bench_env(workdir, with_worker=False)
    key_file = workdir / "bench.key"  # the throwaway key of this database, for --reuse
    if args.reuse:
        env["ENCRYPTION_KEY"] = key_file.read_text().strip()
    else:
        key_file.write_text(env["ENCRYPTION_KEY"])
    meta: dict[str, str] = {}
    notes: list[str] = []
    print(f"work directory {workdir}", flush=True)
    run_cli(env, "migrate", timeout=600)
    token = run_cli(env, "tokens", "create", "--role", "admin", "--name", "bench").strip().splitlines()[-1]
    if args.reuse:
        meta["seed"] = "reused"
        total = int(run_sql(workdir / "bench.db", "SELECT count(*) FROM leads"))
        meta["leads"] = str(total)
        return measure_pages(args, env, token, workdir, meta, notes)
    create_user(env)
    print(f"seeding campaign 'big' with {args.leads} leads ...", flush=True)
    seconds = seed_big(env, args.leads, "fast", workdir)
    meta["seed"] = f"{args.leads} leads in {seconds:.0f} s"
    print(f"  {meta['seed']}", flush=True)
    meta["sales"] = give_sales_leads(env, workdir / "bench.db")
    print(f"  {meta['sales']}", flush=True)
    total = args.leads
    if args.analytics_leads > args.leads:
        extra = args.analytics_leads - args.leads
        print(
            f"seeding campaign 'more' with {extra} leads (for analytics at {args.analytics_leads}) ...",
            flush=True,
        )
        seconds = seed_more(env, extra, workdir)
        total += extra
        meta["seed_more"] = f"{extra} leads in {seconds:.0f} s"
        print(f"  {meta['seed_more']}", flush=True)
    meta["leads"] = str(total)
    return measure_pages(args, env, token, workdir, meta, notes)


def run_sql(db: Path, query: str) -> object:
    with sqlite3.connect(db) as conn:
        return conn.execute(query).fetchone()[0]


def measure_pages(
    args: argparse.Namespace,
    env: dict[str, str],
    token: str,
    workdir: Path,
    meta: dict[str, str],
    notes: list[str],
) -> tuple[list[LoadResult], list[str], dict[str, str]]:
    wrk = args.wrk
    app = start_server("leadflow", [str(LEADFLOW), "serve"], env, workdir)
    results: list[LoadResult] = []
    try:
        meta["git_at_server_start"] = git_state()
        lead_ids = collect_lead_ids(app.port, token, "big", LEAD_IDS)
        for name in args.pages:
            page = PAGES[name]
            session = sign_in(app.port, page.user)
            cookie = {"lf_session": session}
            paths = (
                [page.path.format(lead_id=lead) for lead in lead_ids]
                if "{lead_id}" in page.path
                else [page.path]
            )
            status, _, location, _ = _request(app.port, "GET", paths[0], cookie)
            if status == 404:
                notes.append(f"{name}: {page.path} answers 404 on this branch (page not built yet): skipped")
                print(f"{name}: 404, skipped", flush=True)
                continue
            if status != 200:
                notes.append(f"{name}: GET {paths[0]} answered {status} {location}: skipped")
                print(f"{name}: {status}, skipped", flush=True)
                continue
            path_file = workdir / f"{name}.paths"
            path_file.write_text("".join(p + "\n" for p in paths))
            script = compose_script("paths.lua", workdir)
            url = f"http://{HOST}:{app.port}/"
            headers = [f"Cookie: lf_session={session}"]
            run_wrk(
                wrk,
                scenario=name,
                url=url,
                script=script,
                script_args=[str(path_file)],
                connections=2,
                seconds=2,
                server_pid=app.process.pid,
                headers=headers,
            )  # warm-up
            for concurrency in args.concurrency:
                wait_idle(app.process.pid, args.quiet_wait)
                result = run_wrk(
                    wrk,
                    scenario=name,
                    url=url,
                    script=script,
                    script_args=[str(path_file)],
                    connections=concurrency,
                    seconds=args.duration,
                    server_pid=app.process.pid,
                    headers=headers,
                )
                results.append(result)
                print(
                    f"  {name:15} c={concurrency:<3} {result.rps:7.1f} req/s  p50 {result.p50_ms:7.1f}  "
                    f"p95 {result.p95_ms:7.1f}  p99 {result.p99_ms:7.1f} ms  errors {result.non_2xx}  "
                    f"server CPU {result.server_ms_per_request:.1f} ms/answer, others {result.other_cpu:.2f} core",
                    flush=True,
                )
            # wrk does not count a redirect as an error: the session must still be good after the runs.
            if _request(app.port, "GET", paths[0], cookie)[0] != 200:
                raise SystemExit(f"{name}: the session no longer signs in after the runs")
    finally:
        stop_server(app)
    return results, notes, meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pages", nargs="+", choices=list(PAGES), default=list(PAGES))
    parser.add_argument(
        "--path",
        action="append",
        default=[],
        metavar="NAME=PATH[@P95_MS]",
        help="another page to measure (repeatable; {lead_id} is replaced; target 150 ms unless given)",
    )
    parser.add_argument("--leads", type=int, default=100_000, help="leads in the campaign 'big' (100 000)")
    parser.add_argument(
        "--analytics-leads",
        type=int,
        default=0,
        help="seed up to this many leads in all for the analytics page (1000000 for its target; slow)",
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8], help="connections (1 8)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run (10)")
    parser.add_argument("--quiet-wait", type=float, default=5.0, help="wait for a quiet machine before a run")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (database and its key)")
    parser.add_argument(
        "--reuse", type=Path, metavar="DIR", help="measure a kept work directory again (no seed)"
    )
    args = parser.parse_args(argv)
    for item in args.path:
        name, _, rest = item.partition("=")
        path, _, target = rest.partition("@")
        if not name or not path.startswith("/"):
            parser.error(f"--path {item!r}: expected NAME=/path[@p95_ms]")
        PAGES[name] = Page(name, path, float(target or 150))
        args.pages.append(name)
    if not LEADFLOW.exists():
        raise SystemExit(f"{LEADFLOW} not found: run `make venv` first")
    args.wrk = ensure_wrk()
    print(f"{wrk_version(args.wrk)}; load average {os.getloadavg()}; {git_state()}", flush=True)
    workdir = args.reuse or Path(tempfile.mkdtemp(prefix="leadflow-bench-ws-"))
    started = time.monotonic()
    try:
        results, notes, meta = measure(args, workdir)
    finally:
        if args.keep or args.reuse:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    top = max(args.concurrency)
    print(f"\nTargets (p95 at concurrency {top}; {meta['leads']} leads in all):")
    for result in results:
        if result.concurrency != top:
            continue
        page = PAGES[result.scenario]
        ok = (
            result.ok > 0  # no answer within the run is a MISS, not a p95 of 0
            and result.p95_ms <= page.target_ms
            and result.non_2xx == 0
            and result.socket_errors == 0
            and result.timeouts == 0
        )
        note = page.note
        if page.name == "analytics" and int(meta["leads"]) < 1_000_000:
            note = f"{note}; measured at {meta['leads']} (run with --analytics-leads 1000000)"
        print(
            f"  {'PASS' if ok else 'MISS'}  {page.name:15} p95 {result.p95_ms:7.1f} ms <= {page.target_ms:.0f} ms"
            f"{'  (' + note + ')' if note else ''}"
        )
    for note in notes:
        print(f"  note: {note}")
    print(
        f"\nTotal {time.monotonic() - started:.0f} s ({meta.get('seed')}). A report: exit status 0 either way."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
