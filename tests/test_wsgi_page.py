"""The page's shell: served by greenkeep with its own assets only, holding no data."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import gevent.event
import pytest

from greenkeep import ChildSpec, Supervisor
from greenkeep.wsgi import StatusApp

from _http import fetch, serving

ROOT = Path(__file__).resolve().parent.parent


def idle() -> None:
    gevent.event.Event().wait()


def hello(environ: dict[str, object], start_response: object) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])  # type: ignore[operator]
    return [b"the application"]


def test_the_shell_and_its_assets() -> None:
    """{prefix}/ is HTML that loads page.js and page.css from beside it, under a policy that
    allows nothing else; the shell holds none of the tree's data, even with no token."""
    root = Supervisor([ChildSpec("secret-child-name", idle)], name="app")
    with root, serving(StatusApp(root, prefix="/gk", token="k" * 20)) as url:
        page = fetch(url + "/gk/")
        script = fetch(url + "/gk/page.js")
        style = fetch(url + "/gk/page.css")
        bare = fetch(url + "/gk", follow=False)
        head = fetch(url + "/gk/page.js", method="HEAD")

    assert (200, "text/html; charset=utf-8") == (page.status, page.headers["Content-Type"])
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy and "connect-src 'self'" in policy
    assert "DENY" == page.headers["X-Frame-Options"]
    html = page.body.decode()
    assert re.search(r'<script src="page\.js" defer>', html)
    assert '<link rel="stylesheet" href="page.css">' in html
    assert not re.search(r"(src|href)=\"(https?:)?//", html)  # nothing from elsewhere
    assert "<script>" not in html and "style=" not in html  # no inline code
    assert b"secret-child-name" not in page.body
    assert (200, "text/javascript; charset=utf-8") == (
        script.status,
        script.headers["Content-Type"],
    )
    assert b"api/v1/tree" in script.body and b"localStorage" not in script.body
    assert b"document.cookie" not in script.body and b"innerHTML" not in script.body
    assert (200, "text/css; charset=utf-8") == (style.status, style.headers["Content-Type"])
    assert b"url(" not in style.body  # no external fonts or images
    assert (308, "/gk/") == (bare.status, bare.headers["Location"])  # the shell is at /gk/
    assert (200, b"") == (head.status, head.body)


def test_redirect_to_the_slash() -> None:
    """{prefix} without the slash redirects (308) to {prefix}/, SCRIPT_NAME included."""
    app = StatusApp(Supervisor([], name="app"), prefix="/gk")
    seen: dict[str, object] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen.update(status=status, headers=dict(headers))

    app({"PATH_INFO": "/gk", "SCRIPT_NAME": "/mount", "REQUEST_METHOD": "GET"}, start_response)

    assert "308 Permanent Redirect" == seen["status"]
    assert "/mount/gk/" == seen["headers"]["Location"]  # type: ignore[index]


def test_no_page_at_the_top_of_a_wrapped_app() -> None:
    """With an app and no prefix, / and /api/ stay the application's."""
    root = Supervisor([ChildSpec("idle", idle)], name="app")
    with root, serving(StatusApp(root, app=hello)) as url:
        top = fetch(url + "/")
        api = fetch(url + "/api/v1/tree")
        health = fetch(url + "/healthz")

    assert (b"the application", b"the application") == (top.body, api.body)
    assert 200 == health.status


@pytest.mark.slow
def test_the_wheel_ships_the_page(tmp_path: Path) -> None:
    """The built wheel holds the page's three files."""
    subprocess.run(
        ["uv", "build", "--wheel", "--out-dir", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "greenkeep/_page/index.html",
        "greenkeep/_page/page.js",
        "greenkeep/_page/page.css",
    } <= (names), sorted(names)
    assert sys.version_info >= (3, 10)
