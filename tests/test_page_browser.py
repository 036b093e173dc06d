"""
The supervision page in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``, which ``.ci/run`` installs) driven by Selenium, against a gevent server
on loopback in this process. Every Selenium call runs in one of gevent's native threads, so
the hub keeps serving the page while the test waits for the browser; every wait is for a
condition with a deadline (WebDriverWait), none for time to pass.

The browser reaches nothing but loopback: its proxy is a closed loopback port (Chromium
never proxies loopback itself), and its background services are off.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import gevent
import gevent.event
import gevent.pywsgi
import pytest

import greenkeep
from greenkeep import UNLIMITED, ChildSpec, Supervisor, WorkerPool
from greenkeep.wsgi import StatusApp

from _events import DEADLINE

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

T = TypeVar("T")

SECRET = "hunter" + "2"
TOKEN = "br0wser-" + "t" * 24
#: The page's refresh interval in this test, seconds.
REFRESH = 1.0
#: Seconds a browser step may take (a safety bound: each waits for its condition).
STEP = 20.0
CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
DRIVER = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")


def _first(paths: tuple[str, ...]) -> str | None:
    return next((p for p in paths if os.path.exists(p)), None)


def _in_thread(fn: Callable[[], T]) -> T:
    """Run a (blocking) Selenium call in a native thread; the hub serves meanwhile."""
    result: T = gevent.get_hub().threadpool.apply(fn)
    return result


@pytest.fixture
def browser() -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = _first(CHROMIUM), _first(DRIVER) or shutil.which("chromedriver")
    if binary is None or driver_path is None:
        message = "chromium and chromium-driver are not installed (.ci/run installs them)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    options = Options()
    options.binary_location = binary
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        "--proxy-server=127.0.0.1:9",  # anything but loopback fails
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        "--no-first-run",
        "--no-default-browser-check",
    ):
        options.add_argument(argument)
    driver = _in_thread(lambda: webdriver.Chrome(service=Service(driver_path), options=options))
    driver.set_page_load_timeout(STEP)
    try:
        yield driver
    finally:
        _in_thread(driver.quit)


class Tree:
    """A root with a child that crashes once on demand (a secret in its message), an idle
    child, and a pool of 10,000 workers that crash in a loop from `start_storm` on until
    `calm`."""

    def __init__(self) -> None:
        self.trip = gevent.event.Event()
        self.storm = gevent.event.Event()
        self.gate = gevent.event.Event()

        def flaky() -> None:
            info = greenkeep.current()
            if info is not None and info.incarnation == 1:
                self.trip.wait()
                raise RuntimeError(f"cannot reach the database: password={SECRET}")
            gevent.event.Event().wait()

        def worker(worker_id: int) -> None:
            if not self.storm.is_set():
                self.gate.wait()
            if self.storm.is_set():
                raise ValueError(f"storm crash of worker {worker_id}")

        self.pool = WorkerPool(worker, 10_000, name="storm", max_restarts=UNLIMITED)
        self.root = Supervisor(
            [
                ChildSpec("flaky", flaky),
                ChildSpec("job", lambda: gevent.event.Event().wait()),
                ChildSpec("storm", self.pool),
            ],
            name="shop",
            max_restarts=10,
            period=60,
        )

    def start_storm(self) -> None:
        self.storm.set()
        self.gate.set()

    def calm(self) -> None:
        self.storm.clear()
        self.gate = gevent.event.Event()  # the next incarnations wait again


@pytest.fixture
def served() -> Iterator[tuple[Tree, str]]:
    tree = Tree()
    app = StatusApp(tree.root, prefix="/gk", token=TOKEN, controls=True)
    server = gevent.pywsgi.WSGIServer(("127.0.0.1", 0), app, log=None, error_log=None)
    server.start()
    tree.root.start()
    try:
        yield tree, f"http://127.0.0.1:{server.server_port}/gk/?refresh={REFRESH:g}"
    finally:
        tree.calm()
        tree.root.stop(timeout=DEADLINE)
        server.stop(timeout=1)


def test_the_page_in_chromium(
    browser: Any, served: tuple[Tree, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Type the token, see the tree, see a crash within two refresh intervals, messages
    hidden without the token and shown with it, restart a child with its button, and take
    a screenshot during a crash storm of 10,000 workers."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    tree, url = served

    def wait(condition: Callable[[Any], Any], timeout: float = STEP) -> Any:
        # The page re-renders as it polls: an element found a moment ago may be gone by
        # the time it is read (stale); that is "not yet", and the wait goes on.
        return _in_thread(
            lambda: WebDriverWait(
                browser,
                timeout,
                poll_frequency=0.05,
                ignored_exceptions=(StaleElementReferenceException,),
            ).until(condition)
        )

    def present(css: str) -> Callable[[Any], Any]:
        return lambda d: d.find_elements(By.CSS_SELECTOR, css)

    def row(child_id: str) -> str:
        return f'details[data-path="shop"] > .body > table tr.child[data-id="{child_id}"]'

    def incarnation_of(child_id: str, value: int) -> Callable[[Any], bool]:
        return lambda d: any(
            e.get_attribute("data-incarnation") == str(value)
            for e in d.find_elements(By.CSS_SELECTOR, row(child_id))
        )

    def type_token(text: str) -> None:
        _in_thread(lambda: browser.find_element(By.ID, "token").send_keys(text))
        _in_thread(lambda: browser.find_element(By.ID, "use-token").click())

    # The shell, without the token: no tree, no message.
    _in_thread(lambda: browser.get(url))
    wait(present("#need-token"))
    assert SECRET not in _in_thread(lambda: browser.page_source)
    assert not _in_thread(lambda: browser.find_elements(By.CSS_SELECTOR, "details.sup"))

    # The token typed in: the running tree.
    type_token(TOKEN)
    wait(present('details.sup[data-path="shop"][data-state="running"]'))
    wait(present('details.sup[data-path="shop/storm"][data-kind="pool"]'))
    assert "" == _in_thread(lambda: browser.find_element(By.ID, "token").get_attribute("value"))
    storage = _in_thread(
        lambda: browser.execute_script(
            "return [localStorage.length, sessionStorage.length, document.cookie]"
        )
    )
    assert [0, 0, ""] == storage  # the token is in the page's memory only

    # A crash, seen within two refresh intervals, message included (the token allows it).
    tree.trip.set()
    crashed = time.monotonic()
    wait(incarnation_of("flaky", 2), timeout=2 * REFRESH)
    seen = time.monotonic() - crashed
    wait(lambda d: SECRET in d.find_element(By.CSS_SELECTOR, row("flaky") + " td.msg").text)
    assert seen <= 2 * REFRESH + 0.5

    # Forget the token: the page shows nothing any more; type it again: messages back.
    _in_thread(lambda: browser.find_element(By.ID, "forget-token").click())
    wait(present("#need-token"))
    assert SECRET not in _in_thread(lambda: browser.page_source)
    type_token(TOKEN)
    wait(lambda d: SECRET in d.find_element(By.CSS_SELECTOR, row("flaky") + " td.msg").text)

    # Restart a child with its control button (two clicks: arm, then confirm).
    button = 'button[data-control="restart:shop:job"]'
    for _ in range(2):
        wait(present(button))
        _in_thread(lambda: browser.find_element(By.CSS_SELECTOR, button).click())
    wait(incarnation_of("job", 2))
    assert 2 == next(c.incarnation for c in tree.root.which_children() if c.id == "job")

    # A crash storm of 10,000 workers: the page keeps up; a screenshot of it.
    tree.start_storm()
    wait(present('details[data-path="shop/storm"] li[data-storm="ValueError"]'))
    wait(present('div[data-workers="shop/storm"] tr.child'))
    where = Path(os.environ.get("GREENKEEP_SCREENSHOTS", tmp_path))
    where.mkdir(parents=True, exist_ok=True)
    shot = where / "greenkeep-page-crash-storm.png"
    assert _in_thread(lambda: browser.save_screenshot(str(shot)))
    with capsys.disabled():
        print(f"\nscreenshot of the page during a crash storm: {shot}")
    assert shot.stat().st_size > 10_000
