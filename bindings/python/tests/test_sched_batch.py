"""SCHED_BATCH: the binding's two calls (warpcore_config_set_sched_batch as
the ``sched_batch`` setting, warpcore_thread_set_sched_batch), the workers
and the WSGI pool following the setting, reloads included, and
``python -m warpcore.wsgi --sched-batch``."""

from __future__ import annotations

import os
import sys
import threading

import pytest

import warpcore
from warpcore import _ffi
from warpcore.wsgi import WSGIServer

from .conftest import request
from .test_body_stream import spawned


def policy() -> int:
    return os.sched_getscheduler(0)  # pid 0: the calling thread (Linux)


def on_a_thread(fn):
    out = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join()
    return out[0]


def policy_handler(req: warpcore.Request) -> warpcore.Response:
    return warpcore.Response(200, [], str(policy()).encode())


def policy_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(policy()).encode()]


def test_the_binding_declares_both_functions():
    assert _ffi.FUNCTIONS["warpcore_config_set_sched_batch"] == (_ffi.warpcore_result, [_ffi.warpcore_config_p, _ffi.c_bool])
    assert _ffi.FUNCTIONS["warpcore_thread_set_sched_batch"] == (_ffi.warpcore_result, [_ffi.c_bool])
    assert warpcore.thread_set_sched_batch is _ffi.thread_set_sched_batch


def test_thread_set_sched_batch_moves_the_calling_thread_and_its_new_threads():
    def moved():
        warpcore.thread_set_sched_batch(True)
        seen = (policy(), on_a_thread(policy))
        warpcore.thread_set_sched_batch(False)
        return seen + (policy(),)

    assert on_a_thread(moved) == (os.SCHED_BATCH, os.SCHED_BATCH, os.SCHED_OTHER)
    assert policy() == os.SCHED_OTHER


def test_the_workers_follow_the_setting_and_reloads(serve):
    assert request(serve(policy_handler).port).body == str(os.SCHED_OTHER).encode()
    s = serve(policy_handler, sched_batch=True)
    assert request(s.port).body == str(os.SCHED_BATCH).encode()
    s.reload(sched_batch=False)
    assert request(s.port).body == str(os.SCHED_OTHER).encode()
    with pytest.raises(TypeError, match="sched_batch"):
        s.reload(sched_batch=1)
    with pytest.raises(TypeError, match="sched_batch"):
        warpcore.Server(policy_handler, port=0, sched_batch="yes")


@pytest.mark.parametrize("threads", [2, 0], ids=["pool", "inline"])
def test_the_wsgi_pool_follows_the_setting(threads):
    s = WSGIServer(policy_app, port=0, threads=threads, sched_batch=True).start()
    try:
        assert {request(s.port).body for _ in range(8)} == {str(os.SCHED_BATCH).encode()}
        s.reload(sched_batch=False)
        assert {request(s.port).body for _ in range(8)} == {str(os.SCHED_OTHER).encode()}
    finally:
        s.shutdown(1.0)
    s = WSGIServer(policy_app, port=0, threads=threads).start()
    try:
        assert request(s.port).body == str(os.SCHED_OTHER).encode(), "off by default"
    finally:
        s.shutdown(1.0)


def test_the_command_line_option(tmp_path):
    (tmp_path / "policyapp.py").write_text(
        "import os\n"
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [str(os.sched_getscheduler(0)).encode()]\n"
    )
    args = [sys.executable, "-m", "warpcore.wsgi", "policyapp:app", "--bind", "127.0.0.1:0", "--threads", "2"]
    with spawned(args + ["--sched-batch"], tmp_path) as (_, port):
        assert request(port).body == str(os.SCHED_BATCH).encode()
    with spawned(args, tmp_path) as (_, port):
        assert request(port).body == str(os.SCHED_OTHER).encode()
