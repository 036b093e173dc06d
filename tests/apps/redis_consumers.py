"""
A gevent service whose `greenkeep.WorkerPool` of reliable-queue consumers reads from a real
Redis server (redis-py); run by ``tests/test_outage_redis.py`` in a process of its own, as
the process's main job (``greenkeep.runner.run``).

Each worker moves a job from ``jobs`` to its own processing list (``BLMOVE``), processes it
(records its id, 50 ms of work), and removes it from there (``LREM``). An incarnation
first processes what an earlier incarnation of the same worker left in its processing list
(a job whose ``LREM`` failed): every job is processed at least once. A worker whose Redis
command fails raises (``redis.ConnectionError``): the pool restarts it, by the
configuration `recommended_pool` of ``benchmarks/outage.py`` gives.

Standard input takes ``returned <monotonic time>`` (the server is back since then);
standard output gives JSON lines: ``started``, ``warm`` (every worker completed a command),
``progress`` (every 100 ms: jobs processed, distinct ids), ``recovered`` (every worker has
completed a command issued after the return) and, once the runner returns (``SIGTERM``
stops it), ``result`` with the exit status and every job id processed.
"""

from gevent import monkey

monkey.patch_all()  # redis-py's sockets and locks become gevent's

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402
import gevent.fileobject  # noqa: E402
import redis  # noqa: E402
from redis.backoff import NoBackoff  # noqa: E402
from redis.retry import Retry  # noqa: E402

import greenkeep.logging  # noqa: E402
import greenkeep.runner  # noqa: E402

sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "benchmarks")
)
from outage import recommended_pool  # noqa: E402

#: BLMOVE's own timeout (an empty queue answers None after it), and the work per job.
BLOCK_S = 0.5
WORK_S = 0.05


def say(**message: object) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


class Progress:
    """Per worker: whether it ever completed a command, and when it first completed one
    issued after the server's return."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.ran = [False] * size
        self.ran_count = 0
        self.warm = gevent.event.Event()
        self.returned_at: float | None = None
        self.fresh: list[float | None] = [None] * size
        self.fresh_count = 0
        self.recovered = gevent.event.Event()
        self.processed: set[str] = set()
        self.jobs = 0

    def completed(self, worker_id: int, issued_at: float) -> None:
        if not self.ran[worker_id]:
            self.ran[worker_id] = True
            self.ran_count += 1
            if self.ran_count == self.size:
                self.warm.set()
        returned = self.returned_at
        if returned is not None and issued_at >= returned and self.fresh[worker_id] is None:
            self.fresh[worker_id] = time.monotonic()
            self.fresh_count += 1
            if self.fresh_count == self.size:
                self.recovered.set()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=200)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()

    log = open(args.log, "w", encoding="utf-8")  # noqa: SIM115 (for the process's life)
    greenkeep.logging.configure("json", level="info", stream=log)
    progress = Progress(args.workers)
    client = redis.Redis(
        host="127.0.0.1",
        port=args.port,
        # One connection per worker: every worker holds one while it waits in BLMOVE.
        # redis-py's default pool stops at 100 (redis-py 8 and newer); past it the other
        # workers would crash in a loop with MaxConnectionsError, never reaching Redis.
        max_connections=args.workers,
        # redis-py retries a failed command or connect by itself (6.x and 7.x: 3 retries,
        # exponential backoff up to 10 s; 8.x: 10 retries, up to 1 s each, plus each
        # attempt's connect timeout), holding a worker for seconds where it should fail fast
        # and be restarted by its supervisor, which owns the backoff. No retries.
        retry=Retry(NoBackoff(), 0),
        socket_connect_timeout=1.0,
        socket_timeout=BLOCK_S + 2.0,  # longer than BLMOVE's own wait
    )

    def consume(worker_id: int) -> None:
        mine = f"processing:{worker_id}"
        issued = time.monotonic()
        for job in client.lrange(mine, 0, -1):  # left by an earlier incarnation
            progress.completed(worker_id, issued)
            process(job)
            client.lrem(mine, 1, job)
        progress.completed(worker_id, issued)
        while True:
            issued = time.monotonic()
            job = client.blmove("jobs", mine, BLOCK_S, "LEFT", "RIGHT")
            progress.completed(worker_id, issued)
            if job is not None:
                process(job)
                client.lrem(mine, 1, job)

    def process(job: bytes) -> None:
        progress.processed.add(job.decode())
        progress.jobs += 1
        gevent.sleep(WORK_S)

    pool, _ = recommended_pool(consume, args.workers, name="consumers")
    control = gevent.fileobject.FileObjectPosix(sys.stdin.fileno(), "rb", close=False)

    def controller() -> None:
        for line in control:
            words = line.decode().split()
            if words[:1] == ["returned"]:
                progress.returned_at = float(words[1])

    def report(event: gevent.event.Event, kind: str) -> None:
        event.wait()
        say(type=kind, t=time.monotonic())

    def progress_lines() -> None:
        while True:
            say(type="progress", jobs=progress.jobs, distinct=len(progress.processed))
            gevent.sleep(0.1)

    gevent.spawn(controller)
    gevent.spawn(report, progress.warm, "warm")
    gevent.spawn(report, progress.recovered, "recovered")
    gevent.spawn(progress_lines)
    say(type="started", t=time.monotonic())
    status = greenkeep.runner.run(pool, stop_timeout=5.0)
    say(
        type="result",
        exit_status=status,
        error=None if pool.error is None else type(pool.error).__name__,
        jobs=progress.jobs,
        processed=sorted(progress.processed),
    )
    log.close()
    return status


if __name__ == "__main__":
    raise SystemExit(main())
