"""Capture A/B: the floor, Leadflow at a base commit and Leadflow as checked out, interleaved.

    .venv/bin/python bench/ab.py --base 6738dcd --rounds 2

Extracts ``git archive BASE src`` into a temporary directory and starts, on free 127.0.0.1 ports,
``bench/floor_app.py``, ``leadflow serve`` with that ``src`` first on ``PYTHONPATH`` (``base``) and
``leadflow serve`` of this checkout (``capture``), each on its own fresh SQLite database and key
(the same clean environment as ``bench/run.py``). Then, per round and concurrency, one wrk capture
run against each in turn, so all three see the same machine; prints bench/run.py's table (the server's
CPU per answer is the figure to compare on a busy machine), the ratios against the floor and, at the
end, that each database holds at least as many leads as its runs counted 201 answers. Bounded:
``--duration`` seconds per run, all traffic on 127.0.0.1, servers stopped at the end.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench_run  # bench/ is not a package: its modules are imported by path
from loadgen import ensure_wrk


def extract(base: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "archive", base, "src"], cwd=bench_run.ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


def prepare(name: str, extra: dict[str, str]) -> tuple[Path, dict[str, str]]:
    workdir = Path(tempfile.mkdtemp(prefix=f"leadflow-ab-{name}-"))
    env = bench_run.bench_env(workdir, with_worker=False)
    env.update(extra)
    bench_run.run_cli(env, "migrate")
    bench_run.run_cli(
        env, "campaigns", "create", "--id", bench_run.CAMPAIGN, "--name", "Bench", "--type", "service"
    )
    return workdir, env


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", required=True, help="git revision to compare against")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run (10)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[256, 1000])
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    wrk = ensure_wrk()
    source = extract(args.base, Path(tempfile.mkdtemp(prefix="leadflow-ab-src-")))
    base_dir, base_env = prepare("base", {"PYTHONPATH": str(source)})
    new_dir, new_env = prepare("capture", {})
    report = bench_run.Report()
    bench = bench_run.Bench(argparse.Namespace(duration=args.duration, quiet_wait=3), wrk, new_dir, report)
    floor_cmd = [sys.executable, str(bench_run.BENCH / "floor_app.py")]
    serve = [str(bench_run.LEADFLOW), "serve"]
    floor = bench_run.start_server("baseline", floor_cmd, new_env, new_dir)
    servers = [floor]
    try:
        servers.append(bench_run.start_server("base", serve, base_env, base_dir))
        servers.append(bench_run.start_server("capture", serve, new_env, new_dir))
        named = dict(zip(("baseline", "base", "capture"), servers, strict=True))
        for name, server in named.items():
            bench.capture(name, server, 16, seconds=2, record=False)
        print(f"base = {args.base}, capture = this checkout\n  {bench_run.HEADER}", flush=True)
        for _ in range(args.rounds):
            for concurrency in args.concurrency:
                for name, server in named.items():
                    bench.capture(name, server, concurrency)
    finally:
        for server in reversed(servers):
            bench_run.stop_server(server)
    print("ratios against the floor run just before (throughput; floor CPU per answer / this one's):")
    results = report.results
    for i, result in enumerate(results):
        if result.scenario == "baseline":
            continue
        floor_run = next(r for r in reversed(results[:i]) if r.scenario == "baseline")
        print(
            f"  {result.scenario:<8} c={result.concurrency:<5} throughput {result.rps / floor_run.rps:6.1%}"
            f"   CPU {floor_run.server_ms_per_request / result.server_ms_per_request:6.1%}"
        )
    for name, workdir in (("base", base_dir), ("capture", new_dir)):
        db = sqlite3.connect(workdir / "bench.db")
        try:
            stored = db.execute("SELECT count(*) FROM leads").fetchone()[0]
        finally:
            db.close()
        answered = sum(r.ok for r in results if r.scenario == name)
        print(f"{name}: {stored} leads stored, {answered} 201 answers counted in the measured runs")
    for directory in (source.parent, base_dir, new_dir):
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
