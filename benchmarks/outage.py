"""
outage: what a pool of consumers of an outside service does while that service is down.

Run it with ``uv run benchmarks/outage.py`` (about three minutes: both configurations, a 5 s
and a 60 s outage, and the bug crash loop); ``--quick`` runs the 5 s outage only (the crash
loop still runs for ``--crash-loop-seconds``, default 20; ``--no-crash-loop`` skips it);
``--outage SECONDS`` (repeatable) picks the outage lengths; ``--config`` one configuration;
``--check`` prints a PASS/FAIL list against the acceptance targets (below) and exits 1 when
one is not met; ``--json PATH`` writes every number.

The scenario
============

Four processes, so that what is measured is the service's own cost:

- the *job service*: a gevent ``StreamServer`` on 127.0.0.1 speaking a line protocol (a
  client sends ``JOB``, the server answers ``OK <n>`` after 10 ms of "work"). The outage is
  this process killed (``SIGKILL``: its connections are closed by the kernel, reset where
  data was unread, and the port refuses), then a new one listening on the same port
  ``--outage`` seconds later;
- the *service under test*: a ``greenkeep.WorkerPool`` of 200 consumers, run by
  ``greenkeep.runner.run`` as the process's main job (a pool that gives up ends the process
  with status 70, as it would in production). Each worker connects (gevent sockets), then
  loops: send ``JOB``, read the answer, pause 0.1 s; it raises when the service is gone
  (connection refused, reset, or closed). The same process serves
  ``greenkeep.wsgi.StatusApp(pool)`` with gevent's ``pywsgi`` on loopback, and logs through
  ``greenkeep.logging.configure("json", level="info")`` into a file: every line is rendered
  and written (one ``write`` per line), not discarded;
- a *poller*: ``GET /healthz`` and ``GET /readyz`` every 250 ms, each answer recorded with
  its time (``200``, ``503``, ``404``, ``refused``, ``timeout``, ...);
- this script, which runs the timeline, reads the service's CPU time from
  ``/proc/<pid>/stat`` (user + system, all threads) and, afterwards, its log file.

Times are ``time.monotonic()`` in every process (one clock on Linux); the log's UTC
timestamps are mapped onto it.

Timeline of an outage run: the service starts its pool; once every worker has completed a
job, 2 s of normal running ("before"); the job service is killed (the outage begins) and a
new one listens on the same port after ``--outage`` seconds ("during"); then "after", until
every worker runs again (or at most the acceptance bound plus 5 s) and 2 s more; then
``SIGTERM`` to the service (the runner stops the pool).

What is reported
================

For each configuration and outage length:

- whether and when (seconds after the outage began) the pool gave up, and the runner's exit
  status;
- CPU seconds the service burned per second of outage (from the kill to the return), as a
  % of one core; it includes answering the poller (20 requests a second). For a process
  that ended during the outage (it gave up), also per second of the part it lived;
- log lines written during the outage: total, per second (and per second of the part the
  process lived), per event name;
- *recovery*: from the job service's return until every worker runs again, where a worker
  runs again once it has completed a job on a connection it made after the return (counted
  by the scenario's workers themselves, not read from greenkeep); and the bound the
  acceptance allows, ``max_delay * (1 + jitter) + 1`` s for a pool with a ``Backoff``;
- ``/healthz`` and ``/readyz`` answers per phase, and the time from recovery to the first
  ``/readyz`` ``200``. A ``/readyz`` that answers ``404`` throughout is reported *absent*
  (a greenkeep without it).

The *bug crash loop* (same configuration): every incarnation raises ``TypeError`` at once,
for ``--crash-loop-seconds`` (20); reported: when ``/readyz`` first answered ``503``, whether
the pool gave up or stayed degraded, CPU and log lines.

Configurations: ``zero`` is the README's zero-configuration pool,
``WorkerPool(consume, 200, name="consumers")`` (informational: it gives up within a fraction
of a second, by OTP's intensity rule, and the process exits 70). ``recommended`` is the
configuration recommended for consumers of an outside service: `recommended_pool` below is
the one place that says what it is.

Acceptance targets (``--check``, recommended configuration)
===========================================================

For each outage length: no give-up; CPU during the outage at most 5% of one core; log lines
during the outage at most ``2 * outage + 20`` per event name; every worker runs again within
``max_delay * (1 + jitter) + 1`` s of the return; ``/readyz`` ``503`` throughout the outage
from ``DEGRADED_AFTER + 1`` s after it began (``SKIP`` when the outage is shorter than that),
and ``200`` within 1 s of the recovery (and from then on); ``/healthz`` ``200`` throughout.
For the crash loop: ``/readyz`` ``503`` within 10 s. A readiness check against a ``/readyz``
that is absent is ``ABSENT``, which ``--check`` counts as not met.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

SCRIPT = os.path.abspath(__file__)

#: Workers in the pool under test.
SIZE = 200
#: A worker's pause between two jobs, and the job service's time per job, in seconds.
JOB_PAUSE = 0.1
JOB_WORK = 0.01
#: The poller's period, in seconds: four times finer than the 1 s the readiness targets
#: allow, and far more often than an orchestrator probes (Kubernetes: every 10 s). Each
#: answer is a new HTTP connection, served by the service under test and counted in its
#: CPU: at a 0.1 s period the probes alone were about 2% of a core (4.6% in all in a 5 s
#: outage, against 2.6% with a 1 s period).
POLL_PERIOD = 0.25
#: Normal running before the outage, and after the recovery, in seconds.
BEFORE_S = 2.0
AFTER_S = 2.0
DEFAULT_OUTAGES = (5.0, 60.0)
CRASH_LOOP_S = 20.0

#: Acceptance targets.
CPU_TARGET_PCT = 5.0
LOG_LINES_PER_S = 2.0
LOG_LINES_CONSTANT = 20
RECOVERY_SLACK_S = 1.0
READY_WITHIN_S = 1.0
CRASH_LOOP_NOT_READY_WITHIN_S = 10.0
#: How long after the time a pool becomes degraded ``/readyz`` may still answer 200 (the
#: poller's period and the pool's own evaluation).
DEGRADED_SLACK_S = 1.0

#: The pool's documented degraded-after time, in seconds (README, "Workers that depend on
#: an outside service"): ``/readyz`` answers 503 once half of the workers have been failing
#: for longer.
DEGRADED_AFTER = 1.0


# ------------------------------------------------------------------ configurations
# Each builds the pool under test and returns it with the Backoff it restarts with (None:
# no backoff), which the acceptance bound on recovery is computed from.


def zero_config_pool(target: Callable[..., object], size: int, **kw: Any) -> tuple[Any, Any]:
    """The README's zero-configuration pool."""
    import greenkeep

    return greenkeep.WorkerPool(target, size, **kw), None


def recommended_pool(target: Callable[..., object], size: int, **kw: Any) -> tuple[Any, Any]:
    """
    The configuration recommended for consumers of an outside service (the README's): the
    one place the scenario takes it from. ``Backoff.for_outside_service()``, with
    ``max_restarts`` left at its default.
    """
    import greenkeep

    backoff = greenkeep.Backoff.for_outside_service()
    return greenkeep.WorkerPool(target, size, backoff=backoff, **kw), backoff


CONFIGS: dict[str, Callable[..., tuple[Any, Any]]] = {
    "zero": zero_config_pool,
    "recommended": recommended_pool,
}


def say(**message: object) -> None:
    """One JSON line to the parent."""
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


# ------------------------------------------------------------------ role: job service


def role_jobserver(args: argparse.Namespace) -> int:
    import gevent
    import gevent.server

    served = [0]

    def handle(sock: Any, address: object) -> None:
        reader = sock.makefile("rb")
        try:
            while True:
                line = reader.readline()
                if not line:
                    return
                gevent.sleep(JOB_WORK)
                served[0] += 1
                sock.sendall(b"OK %d\n" % served[0])
        except OSError:
            return
        finally:
            reader.close()
            sock.close()

    if args.listen_at is not None:
        time.sleep(max(0.0, args.listen_at - time.monotonic()))
    server = gevent.server.StreamServer(("127.0.0.1", args.port), handle, backlog=1024)
    server.start()
    say(type="listening", port=server.server_port, t=time.monotonic())
    server.serve_forever()
    return 0


# ------------------------------------------------------------------ role: service under test


class Progress:
    """What the scenario's workers report of themselves: per worker, when its current
    connection was made and when it completed its first job; once the job service's return
    time is known, when each worker first completed a job on a connection made after it."""

    def __init__(self, size: int) -> None:
        import gevent.event

        self.size = size
        self.jobs = 0
        self.conn_at: list[float | None] = [None] * size
        self.first_done: list[float | None] = [None] * size
        self.ever_done = [False] * size
        self.warm_count = 0
        self.warm = gevent.event.Event()
        self.returned_at: float | None = None
        self.fresh: list[float | None] = [None] * size
        self.fresh_count = 0
        self.recovered = gevent.event.Event()

    def connected(self, worker_id: int) -> None:
        self.conn_at[worker_id] = time.monotonic()
        self.first_done[worker_id] = None

    def done(self, worker_id: int) -> None:
        self.jobs += 1
        if self.first_done[worker_id] is not None:
            return
        now = self.first_done[worker_id] = time.monotonic()
        if not self.ever_done[worker_id]:
            self.ever_done[worker_id] = True
            self.warm_count += 1
            if self.warm_count == self.size:
                self.warm.set()
        returned = self.returned_at
        conn_at = self.conn_at[worker_id]
        if returned is not None and conn_at is not None and conn_at >= returned:
            self._fresh(worker_id, now)

    def returned(self, at: float) -> None:
        self.returned_at = at
        for worker_id in range(self.size):
            conn_at, done = self.conn_at[worker_id], self.first_done[worker_id]
            if conn_at is not None and conn_at >= at and done is not None:
                self._fresh(worker_id, done)

    def _fresh(self, worker_id: int, at: float) -> None:
        if self.fresh[worker_id] is None:
            self.fresh[worker_id] = at
            self.fresh_count += 1
            if self.fresh_count == self.size:
                self.recovered.set()


def make_consumer(port: int, progress: Progress) -> Callable[[int], None]:
    import gevent
    import gevent.socket

    def consume(worker_id: int) -> None:
        sock = gevent.socket.socket(gevent.socket.AF_INET, gevent.socket.SOCK_STREAM)
        try:
            sock.settimeout(2.0)
            sock.connect(("127.0.0.1", port))  # refused while the job service is down
            progress.connected(worker_id)
            reader = sock.makefile("rb")
            while True:
                sock.sendall(b"JOB\n")
                if not reader.readline():
                    raise ConnectionResetError("the job service closed the connection")
                progress.done(worker_id)
                gevent.sleep(JOB_PAUSE)
        finally:
            sock.close()

    return consume


def crash_at_once(worker_id: int) -> None:
    raise TypeError(f"a bug: worker {worker_id} cannot start")


def role_service(args: argparse.Namespace) -> int:
    import gevent
    import gevent.fileobject
    import gevent.pywsgi

    import greenkeep
    import greenkeep.logging
    import greenkeep.runner
    import greenkeep.wsgi

    log = open(args.log, "w", encoding="utf-8")  # noqa: SIM115 (open for the process's life)
    greenkeep.logging.configure("json", level="info", stream=log)
    progress = Progress(SIZE)
    target = crash_at_once if args.crash_loop else make_consumer(args.job_port, progress)
    pool, backoff = CONFIGS[args.config](target, SIZE, name="consumers")
    server = gevent.pywsgi.WSGIServer(("127.0.0.1", 0), greenkeep.wsgi.StatusApp(pool), log=None)
    server.start()
    say(
        type="listening",
        http_port=server.server_port,
        pid=os.getpid(),
        greenkeep=greenkeep.__version__,
        backoff=None
        if backoff is None
        else {"max_delay": backoff.max_delay, "jitter": backoff.jitter},
    )
    control = gevent.fileobject.FileObjectPosix(sys.stdin.fileno(), "rb", close=False)
    if control.readline().strip() != b"start":
        return 1

    def report_when(event: Any, kind: str, times: Callable[[], float]) -> None:
        event.wait()
        say(type=kind, t=times())

    def controller() -> None:
        for line in control:
            words = line.decode().split()
            if words[:1] == ["returned"]:
                progress.returned(float(words[1]))
                gevent.spawn(
                    report_when,
                    progress.recovered,
                    "recovered",
                    lambda: max(t for t in progress.fresh if t is not None),
                )

    gevent.spawn(controller)
    gevent.spawn(report_when, progress.warm, "warm", time.monotonic)
    say(type="started", t=time.monotonic())
    status = greenkeep.runner.run(pool, stop_timeout=5.0)
    say(
        type="result",
        t=time.monotonic(),
        exit_status=status,
        state=str(pool.state),
        error=None if pool.error is None else type(pool.error).__name__,
        jobs=progress.jobs,
    )
    server.stop(timeout=1)
    log.close()
    return status


# ------------------------------------------------------------------ role: poller


def role_poller(args: argparse.Namespace) -> int:
    import http.client

    stopping = [False]

    def on_term(signum: int, frame: object) -> None:
        stopping[0] = True

    signal.signal(signal.SIGTERM, on_term)

    def fetch(path: str) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", args.http_port, timeout=1.0)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            return str(response.status)
        except ConnectionRefusedError:
            return "refused"
        except TimeoutError:
            return "timeout"
        except (OSError, http.client.HTTPException) as error:
            return type(error).__name__
        finally:
            conn.close()

    records: list[tuple[float, str, str]] = []
    next_at = time.monotonic()
    first = True
    while not stopping[0]:
        for path in ("/healthz", "/readyz"):
            at = time.monotonic()
            records.append((round(at, 4), path, fetch(path)))
        if first:
            say(type="polling", t=time.monotonic())
            first = False
        next_at += POLL_PERIOD
        now = time.monotonic()
        if next_at < now:
            next_at = now  # fell behind (a slow answer): go on from now
        time.sleep(next_at - now)
    say(type="records", records=records)
    return 0


# ------------------------------------------------------------------ parent: processes


class Child:
    """A role of this script in its own process, talking JSON lines on its stdout."""

    def __init__(self, role: str, *args: str, stderr: IO[str] | None = None) -> None:
        self.role = role
        self.proc = subprocess.Popen(
            [sys.executable, SCRIPT, "--role", role, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        self.pid = self.proc.pid
        self.messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self.ended = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                self.messages.put(json.loads(line))
        self.messages.put(None)

    def expect(self, kind: str, timeout: float) -> dict[str, Any] | None:
        """The next message of *kind* (earlier ones of other kinds are kept in `seen`), or
        None if the process ended or *timeout* passed first."""
        for message in self.seen:
            if message.get("type") == kind and not message.get("_taken"):
                message["_taken"] = True
                return message
        deadline = time.monotonic() + timeout
        while not self.ended:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                message = self.messages.get(timeout=left)
            except queue.Empty:
                return None
            if message is None:
                self.ended = True
                return None
            self.seen.append(message)
            if message.get("type") == kind:
                message["_taken"] = True
                return message
        return None

    def wait_end(self, timeout: float) -> bool:
        """Read messages until the process ends or *timeout* passes; whether it ended."""
        self.expect("", timeout)  # no message has an empty type
        return self.ended

    def find(self, kind: str) -> dict[str, Any] | None:
        return next((m for m in self.seen if m.get("type") == kind), None)

    def send(self, line: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            assert self.proc.stdin is not None
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signum)

    def finish(self, timeout: float = 15.0) -> int | None:
        """Wait for the process to end (killing it past *timeout*); its exit status."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
        finally:
            with contextlib.suppress(OSError):
                if self.proc.stdin is not None:
                    self.proc.stdin.close()
            self._reader.join(5)
            while True:  # what was left unread
                try:
                    message = self.messages.get_nowait()
                except queue.Empty:
                    break
                if message is not None:
                    self.seen.append(message)


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process *pid* (all its threads), from ``/proc``; a
    process that ended but was not reaped yet still has its times there."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return None
    # After the name: state is field 3, utime 14 and stime 15 (1-based, proc(5)).
    return (int(fields[11]) + int(fields[12])) / _TICKS


@dataclass
class Window:
    start: float
    end: float

    def __contains__(self, t: float) -> bool:
        return self.start <= t < self.end

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass
class Run:
    """The raw observations of one run."""

    scenario: str
    config: str
    outage: float | None
    tmp: str
    service: dict[str, Any] = field(default_factory=dict)
    marks: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float | None] = field(default_factory=dict)
    polls: list[tuple[float, str, str]] = field(default_factory=list)
    log: list[tuple[float, str]] = field(default_factory=list)
    log_unparsed: int = 0
    exit_status: int | None = None
    stderr_tail: str = ""


def read_log(path: str, offset: float) -> tuple[list[tuple[float, str]], int]:
    """The service's log lines as (monotonic time, event name), and how many lines were
    not JSON with a timestamp (counted at the end of the run)."""
    lines: list[tuple[float, str]] = []
    unparsed = 0
    end = time.monotonic()
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                event = json.loads(line)
                stamp = event["timestamp"].replace("Z", "+00:00")
                at = datetime.fromisoformat(stamp).timestamp() - offset
                lines.append((at, str(event.get("event"))))
            except (ValueError, KeyError, TypeError, AttributeError):
                unparsed += 1
                lines.append((end, "?"))
    return lines, unparsed


@contextlib.contextmanager
def processes() -> Iterator[list[Child]]:
    children: list[Child] = []
    try:
        yield children
    finally:
        for child in children:
            if child.proc.poll() is None:
                child.proc.kill()
            child.finish(5)


def start_service(run: Run, children: list[Child], *extra: str) -> Child:
    log_path = os.path.join(run.tmp, "service.log")
    stderr = open(os.path.join(run.tmp, "service.err"), "w")  # noqa: SIM115
    service = Child("service", "--config", run.config, "--log", log_path, *extra, stderr=stderr)
    children.append(service)
    listening = service.expect("listening", 60)
    if listening is None:
        raise RuntimeError(f"the service did not start: {_tail(run)}")
    run.service = listening
    return service


def start_poller(children: list[Child], http_port: int) -> Child:
    poller = Child("poller", "--http-port", str(http_port))
    children.append(poller)
    if poller.expect("polling", 30) is None:
        raise RuntimeError("the poller did not start")
    return poller


def end_service(run: Run, service: Child, poller: Child) -> None:
    run.marks["end"] = time.monotonic()
    service.signal(signal.SIGTERM)
    result = service.find("result") or service.expect("result", 20)
    run.exit_status = service.finish(10)
    if result is not None:
        run.marks["result"] = result["t"]
        run.service["result"] = result
    poller.signal(signal.SIGTERM)
    records = poller.expect("records", 10)
    poller.finish(5)
    run.polls = [tuple(r) for r in records["records"]] if records else []  # type: ignore[misc]
    offset = time.time() - time.monotonic()
    run.log, run.log_unparsed = read_log(os.path.join(run.tmp, "service.log"), offset)
    run.stderr_tail = _tail(run)


def _tail(run: Run) -> str:
    try:
        with open(os.path.join(run.tmp, "service.err")) as f:
            return f.read()[-2000:]
    except OSError:
        return ""


def run_outage(config: str, outage: float, tmp: str) -> Run:
    run = Run("outage", config, outage, tmp)
    with processes() as children:
        jobs = Child("jobserver", "--port", "0")
        children.append(jobs)
        listening = jobs.expect("listening", 30)
        if listening is None:
            raise RuntimeError("the job service did not start")
        port = listening["port"]
        service = start_service(run, children, "--job-port", str(port))
        poller = start_poller(children, run.service["http_port"])
        service.send("start")
        if service.expect("warm", 60) is None:
            raise RuntimeError(f"the workers did not all complete a job: {_tail(run)}")
        run.marks["warm"] = time.monotonic()
        time.sleep(BEFORE_S)

        run.cpu["begin"] = cpu_seconds(service.pid)
        run.marks["begin"] = time.monotonic()
        jobs.proc.kill()  # the outage: connections reset, the port refusing
        jobs.finish(10)
        back = Child(
            "jobserver", "--port", str(port), "--listen-at", str(run.marks["begin"] + outage)
        )
        children.append(back)
        returned = back.expect("listening", outage + 60)
        run.cpu["return"] = cpu_seconds(service.pid)
        run.marks["cpu_end"] = time.monotonic()
        if returned is None:
            raise RuntimeError("the job service did not come back")
        run.marks["return"] = returned["t"]

        service.send(f"returned {returned['t']!r}")
        backoff = run.service.get("backoff")
        bound = recovery_bound(backoff)
        recovered = service.expect("recovered", (bound or 0) + 5)
        if recovered is not None:
            run.marks["recovered"] = recovered["t"]
            time.sleep(max(0.0, recovered["t"] + AFTER_S - time.monotonic()))
        else:
            time.sleep(AFTER_S)
        end_service(run, service, poller)
    return run


def run_crash_loop(config: str, seconds: float, tmp: str) -> Run:
    run = Run("crash loop", config, None, tmp)
    with processes() as children:
        service = start_service(run, children, "--crash-loop")
        poller = start_poller(children, run.service["http_port"])
        run.cpu["begin"] = cpu_seconds(service.pid)
        service.send("start")
        started = service.expect("started", 30)
        if started is None:
            raise RuntimeError(f"the service did not start its pool: {_tail(run)}")
        run.marks["begin"] = started["t"]
        deadline = run.marks["begin"] + seconds
        if service.wait_end(deadline - time.monotonic()):
            time.sleep(max(0.0, deadline - time.monotonic()))  # the window is the same
        run.cpu["return"] = cpu_seconds(service.pid)
        run.marks["cpu_end"] = time.monotonic()
        run.marks["return"] = run.marks["cpu_end"]
        end_service(run, service, poller)
    return run


# ------------------------------------------------------------------ analysis


def recovery_bound(backoff: dict[str, float] | None) -> float | None:
    """The longest configured restart delay plus 1 s (None without a backoff)."""
    if backoff is None:
        return None
    return backoff["max_delay"] * (1 + backoff["jitter"]) + RECOVERY_SLACK_S


def answers(polls: list[tuple[float, str, str]], path: str, window: Window) -> Counter[str]:
    return Counter(code for t, p, code in polls if p == path and t in window)


def readyz_absent(polls: list[tuple[float, str, str]]) -> bool:
    codes = {code for _, p, code in polls if p == "/readyz"}
    return codes <= {"404", "refused", "timeout"} and "404" in codes


def gave_up_at(run: Run) -> float | None:
    for t, name in run.log:
        if name == "restart_intensity_exceeded":
            return t
    result = run.service.get("result")
    if result is not None and result.get("exit_status") == 70:
        return float(result["t"])
    if run.exit_status == 70:
        return run.marks.get("result")
    return None


def analyse(run: Run) -> dict[str, Any]:
    m = run.marks
    begin, ret = m["begin"], m["return"]
    end = m.get("end", ret)
    outage = Window(begin, ret)
    before = Window(m.get("warm", begin), begin)
    after = Window(ret, end)
    cpu0, cpu1 = run.cpu.get("begin"), run.cpu.get("return")
    # Per second of outage; for a process that ended (gave up) during it, also per second of
    # the part it lived (its CPU times stay in /proc until it is reaped).
    cpu_end = m.get("cpu_end", ret)
    ended = m.get("result")
    ended_early = ended is not None and ended < cpu_end
    alive_s = (min(cpu_end, ended) if ended is not None else cpu_end) - begin
    cpu_window = cpu_end - begin
    cpu_s = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
    events = Counter(name for t, name in run.log if t in outage)
    give_up = gave_up_at(run)
    result = run.service.get("result") or {}
    out: dict[str, Any] = {
        "scenario": run.scenario,
        "config": run.config,
        "outage_s": run.outage,
        "window_s": round(outage.seconds, 3),
        "ended_early": ended_early,
        "alive_s": round(alive_s, 3),
        "greenkeep": run.service.get("greenkeep"),
        "backoff": run.service.get("backoff"),
        "gave_up": give_up is not None,
        "gave_up_after_s": None if give_up is None else round(give_up - begin, 3),
        "exit_status": run.exit_status,
        "runner_exit_status": result.get("exit_status"),
        "state": result.get("state"),
        "error": result.get("error"),
        "jobs": result.get("jobs"),
        "cpu_s": None if cpu_s is None else round(cpu_s, 3),
        "cpu_pct": None if cpu_s is None else round(100 * cpu_s / cpu_window, 2),
        "cpu_pct_while_alive": None if cpu_s is None else round(100 * cpu_s / alive_s, 2),
        "log_lines": sum(events.values()),
        "log_lines_per_s": round(sum(events.values()) / outage.seconds, 2),
        "log_lines_per_s_while_alive": round(
            sum(events.values()) / min(alive_s, outage.seconds), 2
        ),
        "log_by_event": dict(events.most_common()),
        "log_lines_total": len(run.log),
        "log_unparsed": run.log_unparsed,
        "readyz_absent": readyz_absent(run.polls),
    }
    phases = {"before": before, "during": outage, "after": after}
    if run.scenario == "crash loop":
        phases = {"during": outage}
    out["healthz"] = {k: dict(answers(run.polls, "/healthz", w)) for k, w in phases.items()}
    out["readyz"] = {k: dict(answers(run.polls, "/readyz", w)) for k, w in phases.items()}
    first_503 = next(
        (t for t, p, c in run.polls if p == "/readyz" and c == "503" and t >= begin), None
    )
    out["readyz_first_503_s"] = None if first_503 is None else round(first_503 - begin, 3)
    if run.scenario == "crash loop":
        later = [
            c
            for t, p, c in run.polls
            if p == "/readyz" and first_503 is not None and first_503 <= t < end
        ]
        out["stayed_degraded"] = bool(later) and all(c == "503" for c in later)
        out["crash_loop_s"] = round(outage.seconds, 3)
        return out
    bound = recovery_bound(run.service.get("backoff"))
    recovered = m.get("recovered")
    out["recovery_bound_s"] = None if bound is None else round(bound, 3)
    out["recovery_s"] = None if recovered is None else round(recovered - ret, 3)
    first_200 = next(
        (t for t, p, c in run.polls if p == "/readyz" and c == "200" and t >= ret), None
    )
    out["readyz_first_200_after_return_s"] = (
        None if first_200 is None else round(first_200 - ret, 3)
    )
    out["readyz_first_200_after_recovery_s"] = (
        None if first_200 is None or recovered is None else round(first_200 - recovered, 3)
    )
    degraded_from = begin + DEGRADED_AFTER + DEGRADED_SLACK_S
    out["readyz_degraded_window"] = dict(answers(run.polls, "/readyz", Window(degraded_from, ret)))
    if recovered is not None:
        settled = Window(recovered + READY_WITHIN_S, end)
        out["readyz_after_recovery_plus_1s"] = dict(answers(run.polls, "/readyz", settled))
    return out


@dataclass
class Check:
    scenario: str
    name: str
    status: str  # PASS, FAIL, ABSENT, SKIP
    detail: str

    @property
    def met(self) -> bool:
        return self.status in ("PASS", "SKIP")


def check(result: dict[str, Any]) -> list[Check]:
    checks: list[Check] = []
    if result["scenario"] == "crash loop":
        where = "crash loop"
    else:
        where = f"outage {result['outage_s']:g} s"

    def add(name: str, ok: bool | None, detail: str, absent: bool = False) -> None:
        status = "ABSENT" if absent else ("SKIP" if ok is None else ("PASS" if ok else "FAIL"))
        checks.append(Check(where, name, status, detail))

    absent = result["readyz_absent"]
    if result["scenario"] == "crash loop":
        first = result["readyz_first_503_s"]
        add(
            "/readyz 503 within 10 s",
            first is not None and first <= CRASH_LOOP_NOT_READY_WITHIN_S,
            f"first 503 after {first} s" if first is not None else "never 503",
            absent,
        )
        return checks

    after = result["gave_up_after_s"]
    add(
        "no give-up",
        not result["gave_up"],
        "did not give up" if after is None else f"gave up {after} s after the outage began",
    )
    cpu = result["cpu_pct"]
    ended = f" (the process ended {result['alive_s']} s in)" if result["ended_early"] else ""
    add(
        f"CPU <= {CPU_TARGET_PCT:g}% of one core",
        cpu is not None and cpu <= CPU_TARGET_PCT,
        f"{cpu}%{ended}",
    )
    limit = LOG_LINES_PER_S * result["window_s"] + LOG_LINES_CONSTANT
    by_event = result["log_by_event"]
    worst = max(by_event.items(), key=lambda kv: kv[1], default=("-", 0))
    add(
        f"log lines <= {LOG_LINES_PER_S:g}/s per event + {LOG_LINES_CONSTANT} (<= {limit:.0f} each)",
        worst[1] <= limit,
        f"most: {worst[0]} {worst[1]}",
    )
    bound, rec = result["recovery_bound_s"], result["recovery_s"]
    add(
        f"every worker runs again within max_delay*(1+jitter)+1 s ({bound} s)",
        bound is not None and rec is not None and rec <= bound,
        "never" if rec is None else f"{rec} s after the return",
    )
    window = result["readyz_degraded_window"]
    if not window:
        add(
            f"/readyz 503 during the outage from {DEGRADED_AFTER + DEGRADED_SLACK_S:g} s",
            None,
            f"the outage is not longer than DEGRADED_AFTER ({DEGRADED_AFTER:g} s) + {DEGRADED_SLACK_S:g} s",
            absent,
        )
    else:
        add(
            f"/readyz 503 during the outage from {DEGRADED_AFTER + DEGRADED_SLACK_S:g} s",
            set(window) == {"503"},
            _codes(window),
            absent,
        )
    first = result["readyz_first_200_after_recovery_s"]
    settled = result.get("readyz_after_recovery_plus_1s", {})
    add(
        "/readyz 200 within 1 s of recovery, and from then on",
        first is not None and first <= READY_WITHIN_S and set(settled) <= {"200"},
        f"first 200 {first} s after recovery; then {_codes(settled)}",
        absent,
    )
    healthz = Counter[str]()
    for counts in result["healthz"].values():
        healthz.update(counts)
    add("/healthz 200 throughout", set(healthz) == {"200"}, _codes(healthz))
    return checks


def _codes(counts: dict[str, int]) -> str:
    return ", ".join(f"{code} x{n}" for code, n in sorted(counts.items())) or "no answers"


# ------------------------------------------------------------------ report


def describe(result: dict[str, Any]) -> str:
    lines: list[str] = []
    backoff = result["backoff"]
    conf = (
        "no backoff"
        if backoff is None
        else f"Backoff(max_delay={backoff['max_delay']:g}, jitter={backoff['jitter']:g})"
    )
    if result["scenario"] == "crash loop":
        lines.append(
            f"== {result['config']}: bug crash loop for {result['crash_loop_s']:.1f} s ({conf})"
        )
    else:
        lines.append(f"== {result['config']}: outage of {result['outage_s']:g} s ({conf})")
    gave = f"yes, {result['gave_up_after_s']} s after it began" if result["gave_up"] else "no"
    lines.append(
        f"  gave up:        {gave}; runner exit status {result['runner_exit_status']}"
        f" (process {result['exit_status']}); state {result['state']}"
    )
    early = result["ended_early"]
    lines.append(
        f"  CPU:            {result['cpu_pct']}% of one core ({result['cpu_s']} s over {result['window_s']} s)"
        + (
            f"; the process ended {result['alive_s']} s in: {result['cpu_pct_while_alive']}% while it lived"
            if early
            else ""
        )
    )
    by_event = ", ".join(f"{k} {v}" for k, v in result["log_by_event"].items()) or "none"
    lines.append(
        f"  log lines:      {result['log_lines']} ({result['log_lines_per_s']}/s"
        + (f"; {result['log_lines_per_s_while_alive']}/s while it lived" if early else "")
        + f"): {by_event}"
    )
    if result["scenario"] == "crash loop":
        first = result["readyz_first_503_s"]
        lines.append(
            "  /readyz:        "
            + (
                "absent (404)"
                if result["readyz_absent"]
                else f"first 503 after {first} s; stayed degraded: {result['stayed_degraded']}"
            )
        )
        lines.append(f"  /healthz:       {_codes(result['healthz']['during'])}")
        lines.append(f"  /readyz:        {_codes(result['readyz']['during'])}")
        return "\n".join(lines)
    rec = result["recovery_s"]
    bound = result["recovery_bound_s"]
    lines.append(
        "  recovery:       "
        + (
            "never: not every worker ran again"
            + (" (the process had ended)" if result["exit_status"] == 70 else "")
            if rec is None
            else f"{rec} s after the return"
        )
        + ("" if bound is None else f" (bound {bound} s = max_delay*(1+jitter)+1)")
    )
    for path, key in (("/healthz", "healthz"), ("/readyz", "readyz")):
        phases = "; ".join(f"{phase}: {_codes(c)}" for phase, c in result[key].items())
        lines.append(f"  {path + ':':<15} {phases}")
    if result["readyz_absent"]:
        lines.append("  /readyz:        absent (404): this greenkeep has no /readyz")
    else:
        lines.append(
            f"  /readyz:        first 503 {result['readyz_first_503_s']} s after the outage began;"
            f" first 200 {result['readyz_first_200_after_return_s']} s after the return,"
            f" {result['readyz_first_200_after_recovery_s']} s after recovery"
        )
    lines.append(
        f"  jobs done:      {result['jobs']}; log lines in all {result['log_lines_total']}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--role", choices=("jobserver", "service", "poller"), help=argparse.SUPPRESS
    )
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--listen-at", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--job-port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--http-port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--log", help=argparse.SUPPRESS)
    parser.add_argument("--crash-loop", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--config",
        choices=("all", *CONFIGS),
        default="all",
        help="which configuration (default: all)",
    )
    parser.add_argument(
        "--outage",
        type=float,
        action="append",
        metavar="SECONDS",
        help="an outage length (repeatable; default 5 and 60)",
    )
    parser.add_argument("--quick", action="store_true", help="the 5 s outage only")
    parser.add_argument(
        "--crash-loop-seconds",
        type=float,
        default=CRASH_LOOP_S,
        metavar="SECONDS",
        help=f"how long the bug crash loop runs (default {CRASH_LOOP_S:g})",
    )
    parser.add_argument("--no-crash-loop", action="store_true", help="skip the bug crash loop")
    parser.add_argument("--check", action="store_true", help="PASS/FAIL against the targets")
    parser.add_argument("--json", metavar="PATH", help="write every number to PATH")
    args = parser.parse_args(argv)

    if args.role == "jobserver":
        return role_jobserver(args)
    if args.role == "service":
        args.config = args.config if args.config != "all" else "recommended"
        return role_service(args)
    if args.role == "poller":
        return role_poller(args)

    outages = args.outage or ([5.0] if args.quick else list(DEFAULT_OUTAGES))
    configs = list(CONFIGS) if args.config == "all" else [args.config]
    print(
        f"outage: {SIZE} workers, a job every {JOB_PAUSE:g} s each; outages {', '.join(f'{o:g} s' for o in outages)};"
        f" configurations {', '.join(configs)}; DEGRADED_AFTER {DEGRADED_AFTER:g} s",
        flush=True,
    )
    results: list[dict[str, Any]] = []
    checks: list[Check] = []
    plan: list[tuple[str, float | None]] = []  # (configuration, outage; None: the crash loop)
    for config in configs:
        plan += [(config, outage) for outage in outages]
        if not args.no_crash_loop and config == "recommended":
            plan.append((config, None))
    for config, outage in plan:
        with tempfile.TemporaryDirectory(prefix="greenkeep-outage-") as tmp:
            if outage is None:
                run = run_crash_loop(config, args.crash_loop_seconds, tmp)
            else:
                run = run_outage(config, outage, tmp)
        result = analyse(run)
        results.append(result)
        print(describe(result), flush=True)
        if run.exit_status not in (0, 70):
            print(f"  service's stderr (exit {run.exit_status}):\n{run.stderr_tail}", flush=True)
        if config == "recommended":
            checks += check(result)
    if args.check:
        print(
            f"\nChecks (recommended configuration; log-line constant {LOG_LINES_CONSTANT},"
            f" DEGRADED_AFTER {DEGRADED_AFTER:g} s + {DEGRADED_SLACK_S:g} s slack):"
        )
        for c in checks:
            print(f"  {c.status:<6} {c.scenario}: {c.name}: {c.detail}")
        failed = [c for c in checks if not c.met]
        print(
            f"{len(checks) - len(failed)} passed, {len(failed)} not met" if checks else "no checks"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "results": results,
                    "checks": [c.__dict__ for c in checks],
                    "constants": {
                        "size": SIZE,
                        "job_pause_s": JOB_PAUSE,
                        "cpu_target_pct": CPU_TARGET_PCT,
                        "log_lines_per_s": LOG_LINES_PER_S,
                        "log_lines_constant": LOG_LINES_CONSTANT,
                        "degraded_after_s": DEGRADED_AFTER,
                        "degraded_slack_s": DEGRADED_SLACK_S,
                    },
                },
                f,
                indent=1,
            )
    if args.check and any(not c.met for c in checks):
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
