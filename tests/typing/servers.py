"""Usage of greenkeep's server integrations that mypy --strict checks (never run)."""

from __future__ import annotations

from collections.abc import Iterable

import gevent.pywsgi
from prometheus_client import CollectorRegistry

import greenkeep
import greenkeep.gunicorn
import greenkeep.prometheus
import greenkeep.runner
import greenkeep.wsgi
from greenkeep import ChildSpec, Supervisor, WorkerPool


def consume(worker_id: int) -> None:
    del worker_id


def user_app(environ: dict[str, object], start_response: object) -> Iterable[bytes]:
    return [b""]


metrics = greenkeep.prometheus.Metrics(CollectorRegistry(), refresh_interval=2.0)
pool: WorkerPool = metrics.track(WorkerPool(consume, 10, subscribers=[metrics]))
root: Supervisor = metrics.track(
    Supervisor([ChildSpec("pool", pool)], name="root", subscribers=[metrics])
)
app = greenkeep.wsgi.StatusApp(root, prefix="/_gk", metrics=metrics.wsgi_app())
lazy = greenkeep.wsgi.StatusApp(greenkeep.gunicorn.current_root, app=user_app)
server = gevent.pywsgi.WSGIServer(("127.0.0.1", 0), app)
guarded = greenkeep.wsgi.StatusApp(
    root,
    prefix="/gk",
    token="t" * 32,
    authorize=lambda environ: environ.get("REMOTE_ADDR") == "10.0.0.1",
    controls=True,
)
status: int = greenkeep.runner.run(lambda: root, stop_timeout=5.0)
cli: int = greenkeep.runner.main(["--patch", "myapp:build"])
hooks = greenkeep.gunicorn.Hooks("myapp:build", stop_timeout=8)
also = greenkeep.gunicorn.Hooks(lambda: root)
removed: int = greenkeep.prometheus.clear_multiprocess_dir()
greenkeep.prometheus.mark_process_dead(1234)
maybe: Supervisor | WorkerPool | None = greenkeep.gunicorn.current_root()
codes = (
    greenkeep.runner.EXIT_OK,
    greenkeep.runner.EXIT_GAVE_UP,
    greenkeep.runner.EXIT_UNSTOPPED,
)
