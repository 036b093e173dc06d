"""The gunicorn recipe: one supervision tree per gevent worker process."""

import greenkeep.gunicorn

worker_class = "gevent"
graceful_timeout = 10
hooks = greenkeep.gunicorn.Hooks("gunicorn_app:build_root", stop_timeout=5)
on_starting = hooks.on_starting
post_worker_init = hooks.post_worker_init
worker_exit = hooks.worker_exit
child_exit = hooks.child_exit
