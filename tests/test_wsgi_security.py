"""
What the status endpoints reveal, and to whom: the token and the authorize callable, the
loopback rule of the unconfigured default, and crash messages never served unauthorized.
"""

from __future__ import annotations

import hmac
import io
import json
from collections.abc import Iterator
from typing import Any

import gevent
import gevent.event
import pytest

import greenkeep
import greenkeep._access
from greenkeep import ChildSpec, Supervisor, WorkerPool
from greenkeep.wsgi import StatusApp

from _events import DEADLINE, Events, wait_until
from _http import fetch, serving

SECRET = "hunter" + "2"  # built at run time: no source line of a traceback shows it
TOKEN = "t0ken-" + "x" * 26

#: Every path a StatusApp with these arguments serves (the page is under the prefix).
PATHS = (
    "/healthz",
    "/readyz",
    "/supervisors",
    "/metrics",
    "/gk/",
    "/gk/page.js",
    "/gk/page.css",
    "/gk/api/v1/tree",
    "/gk/api/v1/supervisor?path=root&show=all",
    "/gk/api/v1/supervisor?path=root/pool&show=all",
    "/gk/api/v1/nothing",
    "/elsewhere",
)


def idle(*_: object) -> None:
    gevent.event.Event().wait()


def leaky(*_: object) -> None:
    """Crashes with a secret in its message on its first two incarnations, then idles."""
    info = greenkeep.current()
    if info is not None and info.incarnation <= 2:
        raise RuntimeError(f"cannot connect: password={SECRET}")
    idle()


def metrics(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"# no messages here\n"]


@pytest.fixture
def crashed() -> Iterator[Supervisor]:
    """A running tree whose child and pool crashed with a secret in the message (the pool's
    crashes are kept as a storm with a sample)."""
    events = Events()
    pool = WorkerPool(leaky, 2, name="pool", subscribers=[events], log_summary_interval=60)
    root = Supervisor(
        [
            ChildSpec("once", leaky),
            ChildSpec("pool", pool),
        ],
        name="root",
        max_restarts=10,
        period=60,
        subscribers=[events],
    )
    root.start()
    wait_until(lambda: len(events.of("child_restarted", supervisor="root/pool")) >= 4)
    wait_until(lambda: len(events.of("child_restarted", supervisor="root", child_id="once")) >= 2)
    yield root
    root.stop(timeout=DEADLINE)


@pytest.fixture
def gave_up() -> Supervisor:
    """A root that gave up on a crash whose message holds the secret."""
    root = Supervisor([ChildSpec("leak", leaky)], name="root", max_restarts=0)
    with pytest.raises(greenkeep.RestartIntensityExceeded):
        root.start()  # it gives up while starting
    return root


def call(app: Any, path: str, **environ: Any) -> tuple[int, dict[str, str], bytes]:
    """Call a WSGI app directly with a made-up environ (any REMOTE_ADDR a test needs)."""
    base, _, query = path.partition("?")
    env: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": base,
        "QUERY_STRING": query,
        "SERVER_NAME": "status.test",
        "SERVER_PORT": "80",
        "HTTP_HOST": "status.test",
        "wsgi.input": io.BytesIO(b""),
        **environ,
    }
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        answer["status"] = int(status.split()[0])
        answer["headers"] = dict(headers)

    body = b"".join(app(env, start_response))
    return answer["status"], answer["headers"], body


class TestHealthz:
    def test_a_given_up_root_shows_the_type_never_the_text(self, gave_up: Supervisor) -> None:
        """/healthz says there is an error and its type, to anyone, token or not."""
        for app in (StatusApp(gave_up), StatusApp(gave_up, token=TOKEN)):
            with serving(app) as url:
                plain = fetch(url + "/healthz")
                with_token = fetch(url + "/healthz", headers={"Authorization": f"Bearer {TOKEN}"})

            for answer in (plain, with_token):
                assert (503, "failed", "RestartIntensityExceeded") == (
                    answer.status,
                    answer.json()["state"],
                    answer.json()["error"],
                )
                assert SECRET.encode() not in answer.body
                assert {"status", "supervisor", "state", "error", "pid"} == set(answer.json())


class TestToken:
    def test_no_crash_message_is_served_without_the_token_on_any_path(
        self, crashed: Supervisor, gave_up: Supervisor
    ) -> None:
        """With a token, every path either refuses (401) or carries no message; with the
        token, the API and /supervisors show the messages (and the traceback)."""
        good = {"Authorization": f"Bearer {TOKEN}"}
        wrong = {"Authorization": "Bearer " + "y" * 32}
        for root in (crashed, gave_up):
            app = StatusApp(root, metrics=metrics, token=TOKEN)
            paged = StatusApp(root, prefix="/gk", token=TOKEN)
            for headers in ({}, wrong, {"Authorization": TOKEN}, {"Authorization": "Basic a"}):
                for path in PATHS:
                    with serving(paged if path.startswith("/gk") else app) as url:
                        answer = fetch(url + path, headers=headers)
                    assert SECRET.encode() not in answer.body, (path, headers)
                    if path.startswith(("/supervisors", "/gk/api/v1/tree", "/gk/api/v1/sup")):
                        assert 401 == answer.status, (path, headers)
                        assert 'Bearer realm="greenkeep"' == answer.headers["WWW-Authenticate"]
        with serving(StatusApp(crashed, prefix="/gk", token=TOKEN)) as url:
            tree = fetch(url + "/gk/api/v1/tree", headers=good)
            pool = fetch(url + "/gk/api/v1/supervisor?path=root/pool", headers=good)
        with serving(StatusApp(gave_up, prefix="/gk", token=TOKEN)) as url:
            snapshot = fetch(url + "/gk/supervisors", headers=good)
            failed = fetch(url + "/gk/api/v1/supervisor?path=root&show=all", headers=good)
        assert (200, True) == (tree.status, tree.json()["messages"])
        assert SECRET in tree.json()["root"]["children"][0]["last_exit"]["message"]
        assert SECRET in snapshot.json()["error"]
        storm = pool.json()["supervisor"]["storms"][0]
        assert ("RuntimeError", True) == (
            storm["error_type"],
            SECRET in storm["sample"]["message"],
        )
        traceback = failed.json()["supervisor"]["error"]["last_exit"]["traceback"]
        assert "Traceback" in traceback and SECRET in traceback

    def test_the_comparison_is_constant_time(
        self, crashed: Supervisor, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The bearer token is compared with hmac.compare_digest, as bytes."""
        seen: list[tuple[bytes, bytes]] = []
        original = hmac.compare_digest

        def spy(a: bytes, b: bytes) -> bool:
            seen.append((a, b))
            return original(a, b)

        monkeypatch.setattr(greenkeep._access.hmac, "compare_digest", spy)
        app = StatusApp(crashed, token=TOKEN)
        wrong = call(app, "/supervisors", HTTP_AUTHORIZATION="Bearer " + "z" * 32)[0]
        right = call(app, "/supervisors", HTTP_AUTHORIZATION=f"bearer  {TOKEN} ")[0]

        assert (401, 200) == (wrong, right)
        assert [(b"z" * 32, TOKEN.encode()), (TOKEN.encode(), TOKEN.encode())] == seen

    @pytest.mark.parametrize(
        "token",
        ["short", 12345, "a token with spaces in it", "ünicode-token-that-is-long", ""],
    )
    def test_a_bad_token_is_refused_without_showing_it(self, token: object) -> None:
        """A token that is not 16+ visible ASCII characters is an InvalidArgumentError that
        names the argument and never repeats the token."""
        with pytest.raises(greenkeep.InvalidArgumentError) as caught:
            StatusApp(Supervisor([], name="app"), token=token)  # type: ignore[arg-type]

        assert "token" == caught.value.field
        assert str(token) not in str(caught.value) or str(token) == ""


class TestAuthorize:
    def test_a_callable_decides_and_fails_closed(self, crashed: Supervisor) -> None:
        """authorize(environ) decides; what it raises refuses; with a token both must pass."""

        def by_header(environ: dict[str, Any]) -> bool:
            if environ.get("HTTP_X_BOOM"):
                raise RuntimeError("bug in the callable")
            return environ.get("HTTP_X_TEAM") == "ops"

        alone = StatusApp(crashed, authorize=by_header)
        both = StatusApp(crashed, authorize=by_header, token=TOKEN)
        bearer = f"Bearer {TOKEN}"

        assert 200 == call(alone, "/api/v1/tree", HTTP_X_TEAM="ops")[0]
        assert 401 == call(alone, "/supervisors", HTTP_X_TEAM="dev")[0]
        assert 401 == call(alone, "/supervisors", HTTP_X_TEAM="ops", HTTP_X_BOOM="1")[0]
        assert 401 == call(both, "/supervisors", HTTP_X_TEAM="ops")[0]
        assert 401 == call(both, "/supervisors", HTTP_AUTHORIZATION=bearer)[0]
        status, _, body = call(both, "/api/v1/tree", HTTP_X_TEAM="ops", HTTP_AUTHORIZATION=bearer)
        assert 200 == status and SECRET.encode() in body
        assert 200 == call(both, "/healthz")[0]  # public


class TestUnconfiguredDefault:
    @pytest.mark.parametrize(
        ("environ", "shown"),
        [
            ({"REMOTE_ADDR": "127.0.0.1"}, True),
            ({"REMOTE_ADDR": "127.8.9.10"}, True),
            ({"REMOTE_ADDR": "::1"}, True),
            ({"REMOTE_ADDR": "::ffff:127.0.0.1"}, True),
            ({"REMOTE_ADDR": "10.1.2.3"}, False),
            ({"REMOTE_ADDR": "192.0.2.7"}, False),
            ({"REMOTE_ADDR": "2001:db8::1"}, False),
            ({"REMOTE_ADDR": ""}, False),
            ({}, False),
            ({"REMOTE_ADDR": "not an address"}, False),
            ({"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "192.0.2.7"}, False),
            ({"REMOTE_ADDR": "127.0.0.1", "HTTP_FORWARDED": "for=192.0.2.7"}, False),
            ({"REMOTE_ADDR": "127.0.0.1", "HTTP_X_REAL_IP": "192.0.2.7"}, False),
        ],
    )
    def test_messages_only_for_direct_loopback_requests(
        self, crashed: Supervisor, gave_up: Supervisor, environ: dict[str, str], shown: bool
    ) -> None:
        """Nothing configured: nothing refused; messages only straight from loopback."""
        for root, paths in (
            (crashed, ("/gk/api/v1/tree", "/gk/api/v1/supervisor?path=root/pool")),
            (gave_up, ("/gk/supervisors", "/gk/api/v1/supervisor?path=root")),
        ):
            app = StatusApp(root, prefix="/gk")
            for path in paths:
                status, _, body = call(app, path, **environ)
                assert (200, shown) == (status, SECRET.encode() in body), path

    def test_redacted_answers_keep_types_reasons_and_counts(
        self, crashed: Supervisor, gave_up: Supervisor
    ) -> None:
        """A redacted answer still says what crashed, why and how often: over HTTP, a
        request through a proxy (X-Forwarded-For) gets the types and counts."""
        proxied = {"X-Forwarded-For": "192.0.2.7"}
        with serving(StatusApp(crashed, prefix="/gk")) as url:
            tree = fetch(url + "/gk/api/v1/tree", headers=proxied).json()
            pool = fetch(url + "/gk/api/v1/supervisor?path=root/pool", headers=proxied).json()
            direct = fetch(url + "/gk/api/v1/tree").json()
        with serving(StatusApp(gave_up, prefix="/gk")) as url:
            snapshot = fetch(url + "/gk/supervisors", headers=proxied).json()
            failed = fetch(url + "/gk/api/v1/supervisor?path=root", headers=proxied).json()

        once = tree["root"]["children"][0]
        assert (False, True) == (tree["messages"], direct["messages"])
        assert ("abnormal", "RuntimeError", "[message hidden]") == (
            once["last_exit"]["reason"],
            once["last_exit"]["type"],
            once["last_exit"]["message"],
        )
        assert once["restarts"] >= 1
        assert "supervisor 'root' gave up: more than 0 restart(s)" in snapshot["error"]
        assert snapshot["error"].endswith("abnormal: RuntimeError [message hidden])")
        last = failed["supervisor"]["error"]["last_exit"]
        assert ("RuntimeError", "[message hidden]", "[message hidden]") == (
            last["type"],
            last["message"],
            last["traceback"],
        )
        storm = pool["supervisor"]["storms"][0]
        assert ("RuntimeError", "[message hidden]") == (
            storm["error_type"],
            storm["sample"]["message"],
        )
        assert storm["total"] >= 2
        assert SECRET not in json.dumps([tree, snapshot, pool, failed])


class TestArguments:
    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"authorize": "yes"}, "authorize"),
            ({"controls": 1}, "controls"),
            ({"controls": True}, "controls"),  # controls need a token or authorize
            ({"logger": 3}, "logger"),
        ],
    )
    def test_invalid_arguments_name_the_field(self, kwargs: dict[str, Any], field: str) -> None:
        with pytest.raises(greenkeep.InvalidArgumentError) as caught:
            StatusApp(Supervisor([], name="app"), **kwargs)

        assert field == caught.value.field
