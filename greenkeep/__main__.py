"""
``python -m greenkeep module:factory``: run a root supervisor as this process's main job.

See `greenkeep.runner.main` for the options, and `greenkeep.runner` for the exit statuses.
``--patch`` monkey-patches before the factory's module is imported, but after greenkeep
itself (and so gevent and structlog) was: a program that must patch first of all calls
``gevent.monkey.patch_all()`` on its own first line and then `greenkeep.runner.run`.
"""

from __future__ import annotations

from greenkeep.runner import main

if __name__ == "__main__":
    raise SystemExit(main())
