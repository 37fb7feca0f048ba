"""The load generator: wrk (C, epoll, one thread) driven by the Lua scripts in bench/wrk/.

Each run is closed-loop: ``connections`` keep-alive connections, each sending its next request as soon
as the previous answer arrives, for ``duration`` seconds, to 127.0.0.1 only. The Lua script
``report.lua`` prints one ``WRKJSON {...}`` line that is parsed here. CPU time of the server, of wrk
and of everything else on the machine is measured around each run, so a report shows whether the
client stayed cheap and whether something else was competing for the two cores.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

WRK_DIR = Path(__file__).resolve().parent / "wrk"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
INSTALL_HINT = (
    "wrk is needed for the load: `sudo apt-get install -y wrk` (Debian/Ubuntu), `brew install wrk` "
    "(macOS), or build it from https://github.com/wg/wrk; then run `make bench` again."
)


def ensure_wrk() -> str:
    """The path of wrk; installs Debian's package when missing and running as root with apt-get."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk not found: installing Debian's wrk package (apt-get install -y wrk)", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-qq", "wrk"]
        if subprocess.run(install, env=env, check=False).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
            subprocess.run(install, env=env, check=False)
        found = shutil.which("wrk")
        if found:
            return found
    raise SystemExit(INSTALL_HINT)


def wrk_version(wrk: str) -> str:
    out = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).splitlines()[0].strip() if (out.stdout or out.stderr) else "wrk"


def machine_busy_seconds() -> float:
    """CPU seconds spent by the whole machine (all cores, not idle, not waiting for I/O)."""
    with Path("/proc/stat").open() as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) and of the processes it runs now
    (`leadflow serve`'s capture writer process on SQLite): the server's CPU is theirs together."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = raw.rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return own + sum(process_cpu_seconds(child) for child in _child_pids(pid))


def _child_pids(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(c) for c in (task / "children").read_text().split()]
    except OSError:
        pass
    return found


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True, slots=True)
class LoadResult:
    scenario: str
    concurrency: int
    seconds: float
    requests: int  # answers received (any status)
    non_2xx: int  # answers with status >= 400 (wrk does not count 3xx here; the API sends none)
    socket_errors: int  # connect, read and write errors
    timeouts: int
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    server_cpu: float  # share of one core used by the server process (and its writer process) over the run
    client_cpu: float  # share of one core used by wrk
    other_cpu: float  # share of one core used by everything else on the machine
    profiled: bool = False

    @property
    def ok(self) -> int:
        return self.requests - self.non_2xx

    @property
    def server_ms_per_request(self) -> float:
        """Server CPU time per answer: unlike req/s, barely moved by other load on the machine."""
        return 1000 * self.server_cpu * self.seconds / self.requests if self.requests else 0.0

    @property
    def rps(self) -> float:
        """Successful (2xx) answers per second."""
        return self.ok / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            **asdict(self),
            "ok": self.ok,
            "rps": round(self.rps, 1),
            "server_ms_per_request": round(self.server_ms_per_request, 3),
        }


def compose_script(scenario_lua: str, workdir: Path) -> Path:
    """wrk takes one script: the shared report function followed by the scenario's script."""
    target = workdir / f"{Path(scenario_lua).stem}.lua"
    if not target.exists():
        text = (WRK_DIR / "report.lua").read_text() + "\n" + (WRK_DIR / scenario_lua).read_text()
        target.write_text(text)
    return target


def run_wrk(
    wrk: str,
    *,
    scenario: str,
    url: str,
    script: Path,
    script_args: Sequence[str] = (),
    connections: int,
    seconds: float,
    server_pid: int,
    headers: Sequence[str] = (),
    profile_to: Path | None = None,
) -> LoadResult:
    """One closed-loop run of wrk against ``url`` (must be on 127.0.0.1)."""
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError("the benchmark only sends load to 127.0.0.1")
    command = [
        wrk,
        "--threads",
        "1",
        "--connections",
        str(connections),
        "--duration",
        f"{max(1, round(seconds))}s",
        "--timeout",
        f"{max(30, round(seconds) * 3)}s",  # longer than the run: slow answers count, never drop out
        "--script",
        str(script),
    ]
    for header in headers:
        command += ["--header", header]
    command += [url, "--", *script_args]
    spy: subprocess.Popen[bytes] | None = None
    if profile_to is not None:
        spy = _start_py_spy(server_pid, seconds, profile_to)
    busy0, server0, client0 = machine_busy_seconds(), process_cpu_seconds(server_pid), _children_cpu_seconds()
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    busy1, server1, client1 = machine_busy_seconds(), process_cpu_seconds(server_pid), _children_cpu_seconds()
    if spy is not None:
        spy.wait(timeout=60)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    data = json.loads(line.removeprefix("WRKJSON "))
    server_s, client_s = server1 - server0, client1 - client0
    other_s = max(0.0, (busy1 - busy0) - server_s - client_s)
    return LoadResult(
        scenario=scenario,
        concurrency=connections,
        seconds=data["duration_us"] / 1e6,
        requests=int(data["requests"]),
        non_2xx=int(data["status_errors"]),
        socket_errors=int(data["connect_errors"] + data["read_errors"] + data["write_errors"]),
        timeouts=int(data["timeouts"]),
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p95_ms=data["p95_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        server_cpu=server_s / elapsed,
        client_cpu=client_s / elapsed,
        other_cpu=other_s / elapsed,
        profiled=profile_to is not None,
    )


PROFILE_RATE = 200  # samples per second


def _start_py_spy(pid: int, seconds: float, output: Path) -> subprocess.Popen[bytes]:
    """Sample the server with py-spy while wrk runs (see summarise_profile).

    ``--gil`` keeps only the samples of the thread holding the GIL: the server is one process with one
    event loop, so the GIL is what saturates first, and these samples say what it is spent on.
    SQLite's own work runs in aiosqlite's threads with the GIL released and is not in them.
    """
    venv_py_spy = Path(sys.executable).with_name("py-spy")
    py_spy = str(venv_py_spy) if venv_py_spy.exists() else (shutil.which("py-spy") or "py-spy")
    if not Path(py_spy).exists() and not shutil.which(py_spy):
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    command = [
        py_spy,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(_profile_seconds(seconds)),
        "--rate",
        str(PROFILE_RATE),
        "--nonblocking",
        "--gil",
        "--format",
        "raw",
        "--output",
        str(output),
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _profile_seconds(run_seconds: float) -> int:
    return max(1, round(run_seconds) - 1)


@dataclass(frozen=True, slots=True)
class Profile:
    """What the GIL was spent on during a run (py-spy ``--gil`` samples, collapsed stacks)."""

    gil_busy: float  # share of the run in which some thread held the GIL (1.0: saturated)
    leaves: list[tuple[str, float]]  # functions on top of the stack, % of the GIL samples
    ours: list[tuple[str, float]]  # Leadflow functions, inclusive (with what they call), %


def _function(frame: str) -> str:
    """``name (path:line)`` -> ``name (path)``: one entry per function, whatever the line."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0]})" if where else name


def summarise_profile(path: Path, run_seconds: float, top: int = 12) -> Profile | None:
    if not path.exists():
        return None
    leaves: dict[str, int] = {}
    ours: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = [_function(f) for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        count = int(count_text)
        total += count
        leaves[frames[-1]] = leaves.get(frames[-1], 0) + count
        for frame in set(frames):
            if "(leadflow/" in frame:
                ours[frame] = ours.get(frame, 0) + count
    if not total:
        return None

    def ranked(counts: dict[str, int]) -> list[tuple[str, float]]:
        return [(f, 100 * counts[f] / total) for f in sorted(counts, key=lambda f: -counts[f])[:top]]

    busy = total / (PROFILE_RATE * _profile_seconds(run_seconds))
    return Profile(gil_busy=min(1.0, busy), leaves=ranked(leaves), ours=ranked(ours))
