"""The master process, as gunicorn's arbiter: it opens the listening sockets
once, forks the worker processes (each serves them as ``fd://N``
listeners, see :mod:`warpcore._sockets` for why not one ``SO_REUSEPORT``
socket each), watches them, and answers signals:

- HUP: reads the configuration again (config file, then the command line)
  and replaces every worker: the new ones (which import the application
  afresh) start first, and each old one is told to stop gracefully as a new
  one reports ready, so the capacity never drops and no connection is
  refused (they queue on the shared sockets meanwhile). Listeners added to
  the configuration are opened, dropped ones closed. A configuration that
  cannot be read changes nothing; new workers that cannot boot are retried
  with a growing delay while the old ones keep serving.
- USR1: reopens the error log here and tells every worker to reopen its logs.
- TTIN / TTOU: one worker more / one fewer (the oldest stops gracefully).
- TERM and QUIT: graceful stop: the workers finish what they are doing
  within ``--graceful-timeout``; INT: quick stop. A second TERM, QUIT or INT
  during a graceful stop makes it quick. Whatever is still running after the
  deadline is killed.
- CHLD: a worker that died is replaced.

A worker that stops reporting (see :mod:`warpcore._worker`) for
``--timeout`` seconds is killed (SIGKILL) and replaced; one that asks to
retire (``--max-requests``, ``--reload``) is replaced first, then stopped.
The master writes ``--pid`` and removes it at the end; on start, a first
generation of workers that cannot load the application ends the master
with status 1. The master never runs the application nor a server, and
forks from its only thread.
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
import select
import signal
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional

from . import _logs, _worker
from ._config import Config, ConfigError
from ._sockets import AddressError, Listener, inherit, open_listener, systemd_fds

__all__ = ["Arbiter"]

log = logging.getLogger("warpcore.arbiter")

#: Added to --graceful-timeout before a stopping worker is killed.
KILL_MARGIN = 5.0
#: Delays between attempts to start workers that fail to boot.
BACKOFF_FIRST, BACKOFF_MOST = 1.0, 30.0


class _Child:
    """A worker process, as the master sees it."""

    __slots__ = ("pid", "gen", "age", "beat", "seen", "changed_at", "ready", "wants_replacement", "stopping_since",
                 "stop_deadline", "killed")

    def __init__(self, pid: int, gen: int, age: int, beat: mmap.mmap, now: float) -> None:
        self.pid = pid
        self.gen = gen
        self.age = age
        self.beat = beat
        self.seen = 0
        self.changed_at = now
        self.ready = False
        self.wants_replacement = False
        self.stopping_since: Optional[float] = None  # told to stop (or killed)
        self.stop_deadline = 0.0
        self.killed = False


class Arbiter:
    """Runs the master until it stops; ``run()`` returns the exit status.

    ``cfg`` is the configuration to start with, ``reload_config()`` reads it
    again (SIGHUP; None: the same), ``load(cfg)`` loads the application in a
    worker, ``ready(addresses)`` is called once the first workers are ready
    (default: prints ``listening on ADDRESS`` for each)."""

    def __init__(
        self,
        cfg: Config,
        load: Callable[[Config], Any],
        reload_config: Optional[Callable[[], Config]] = None,
        ready: Optional[Callable[[List[str]], None]] = None,
    ) -> None:
        self.cfg = cfg
        self.load = load
        self.reload_config = reload_config
        self.ready = ready or _print_addresses
        self.pid = os.getpid()
        self.listeners: List[Listener] = []
        self.systemd = False
        self.children: Dict[int, _Child] = {}
        self.gen = 0
        self.age = 0
        self.target = cfg.workers
        self.signals: List[int] = []
        self.stopping: Optional[str] = None
        self.stop_deadline = 0.0
        self.ever_ready = False
        self.announced = False
        self.exit_code = 0
        self.spawn_after = 0.0
        self.backoff = 0.0
        self._notify_buf = b""

    # -- setup --------------------------------------------------------------------

    def _period(self) -> float:
        t = self.cfg.timeout
        return max(0.05, min(1.0, t / 4)) if t else 1.0

    def _open_listeners(self) -> None:
        fds = systemd_fds()
        if fds:
            self.systemd = True
            self.listeners = [inherit(fd) for fd in fds]
            log.info("listening on the %d socket(s) systemd passed (LISTEN_FDS); --bind is not used", len(fds))
            return
        self.listeners = self._open(self.cfg.bind, [])

    def _open(self, specs: List[str], have: List[Listener]) -> List[Listener]:
        """Listeners for ``specs``: those in ``have`` with the same spec (or
        whose address it names: the port a 0 got) are kept, the rest opened
        (all or none: on an error the new ones close)."""
        kept = {lst.address: lst for lst in have}
        kept.update((lst.spec, lst) for lst in have)
        out: List[Listener] = []
        opened: List[Listener] = []
        try:
            for spec in dict.fromkeys(specs):
                lst = kept.get(spec)
                if lst is None:
                    lst = open_listener(spec, self.cfg.backlog)
                    opened.append(lst)
                out.append(lst)
        except BaseException:
            for lst in opened:
                lst.close()
            raise
        return out

    def _write_pidfile(self) -> None:
        path = self.cfg.pidfile
        if not path:
            return
        # A new file (O_EXCL) of a random name beside it, renamed over it: a
        # name one could guess is one another user could plant a symbolic
        # link at, in a shared directory, for this process to write through.
        directory, name = os.path.split(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
        try:
            try:
                os.fchmod(fd, 0o644)
                os.write(fd, f"{self.pid}\n".encode("ascii"))
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def _remove_pidfile(self, path: Optional[str]) -> None:
        if not path:
            return
        try:
            with open(path) as f:
                if f.read().strip() != str(self.pid):
                    return  # another master's now
            os.unlink(path)
        except OSError:
            pass

    # -- run ------------------------------------------------------------------------

    def run(self) -> int:
        for warning in self.cfg.warnings:
            log.warning("%s", warning)
        try:
            self._open_listeners()
        except (AddressError, OSError) as exc:
            log.error("cannot listen: %s", exc)
            return 1
        pidfile = self.cfg.pidfile
        try:
            self._write_pidfile()
        except OSError as exc:
            log.error("cannot write the PID file %s: %s", pidfile, exc)
            self._close_listeners()
            return 1
        self.wake_r, self.wake_w = os.pipe()
        self.notify_r, self.notify_w = os.pipe()
        for fd in (self.wake_r, self.wake_w, self.notify_r):
            os.set_blocking(fd, False)
        old_wakeup = signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in _worker._MASTER_SIGNALS}
        log.info("master %d: %d worker(s) of %d thread(s) and %d event loop(s), %s", self.pid, self.target,
                 self.cfg.threads, self.cfg.loops, ", ".join(lst.address for lst in self.listeners))
        try:
            self._loop()
        finally:
            self._kill_all(signal.SIGKILL)
            self._reap(block=True)
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for fd in (self.wake_r, self.wake_w, self.notify_r, self.notify_w):
                os.close(fd)
            self._close_listeners()
            self._remove_pidfile(self.cfg.pidfile or pidfile)
            log.info("master %d: stopped", self.pid)
        return self.exit_code

    def _close_listeners(self) -> None:
        for lst in self.listeners:
            lst.close()
        self.listeners = []

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signals.append(signum)

    def _loop(self) -> None:
        while True:
            try:
                ready, _, _ = select.select([self.wake_r, self.notify_r], [], [], self._period())
            except InterruptedError:  # pragma: no cover - PEP 475 retries
                ready = []
            if self.wake_r in ready:
                _drain(self.wake_r)
            if self.notify_r in ready:
                self._read_notices()
            while self.signals:
                self._handle_signal(self.signals.pop(0))
            self._reap()
            now = time.monotonic()
            if self.stopping is not None:
                if not self.children:
                    return
                if now >= self.stop_deadline:
                    log.warning("workers still running after the stop deadline: killing them")
                    self._kill_all(signal.SIGKILL)
                    self._reap(block=True)
                    return
                continue
            self._check_children(now)
            self._manage(now)

    # -- signals --------------------------------------------------------------------

    def _handle_signal(self, sig: int) -> None:
        if sig == signal.SIGCHLD:
            return  # reaped in the loop
        if sig in (signal.SIGTERM, signal.SIGQUIT):
            self._stop(graceful=self.stopping is None)
        elif sig == signal.SIGINT:
            self._stop(graceful=False)
        elif self.stopping is not None:
            return
        elif sig == signal.SIGHUP:
            self._reload()
        elif sig == signal.SIGUSR1:
            _logs.reopen()
            log.info("SIGUSR1: logs reopened")
            self._kill_all(signal.SIGUSR1)
        elif sig == signal.SIGTTIN:
            self.target += 1
            log.info("SIGTTIN: %d worker(s)", self.target)
        elif sig == signal.SIGTTOU:
            if self.target > 1:
                self.target -= 1
            log.info("SIGTTOU: %d worker(s)", self.target)

    def _stop(self, graceful: bool) -> None:
        if self.stopping == "quick" or (self.stopping == "graceful" and graceful):
            return
        self.stopping = "graceful" if graceful else "quick"
        log.info("stopping %s", "gracefully" if graceful else "at once")
        grace = self.cfg.graceful_timeout if graceful else 0.0
        self.stop_deadline = time.monotonic() + grace + KILL_MARGIN
        self._kill_all(signal.SIGTERM if graceful else signal.SIGINT)

    def _reload(self) -> None:
        if self.reload_config is None:
            cfg = self.cfg
        else:
            try:
                cfg = self.reload_config()
            except (ConfigError, SystemExit) as exc:
                log.error("SIGHUP: the configuration cannot be read, nothing changes: %s", exc)
                return
        for warning in cfg.warnings:
            log.warning("%s", warning)
        if not self.systemd:
            try:
                listeners = self._open(cfg.bind, self.listeners)
            except (AddressError, OSError) as exc:
                log.error("SIGHUP: cannot listen, nothing changes: %s", exc)
                return
            for lst in self.listeners:
                if lst not in listeners:
                    # Old workers keep their copy while they drain.
                    log.info("no longer listening on %s", lst.address)
                    lst.close()
            self.listeners = listeners
        old_pidfile = self.cfg.pidfile
        self.cfg = cfg
        try:
            _logs.configure(cfg.errorlog, cfg.loglevel)
        except OSError as exc:
            log.error("SIGHUP: cannot open the error log %s, keeping the old one: %s", cfg.errorlog, exc)
        if cfg.pidfile != old_pidfile:
            self._remove_pidfile(old_pidfile)
            try:
                self._write_pidfile()
            except OSError as exc:
                log.error("cannot write the PID file %s: %s", cfg.pidfile, exc)
        self.gen += 1
        self.target = cfg.workers
        self.spawn_after = 0.0
        log.info("SIGHUP: configuration read; starting %d new worker(s) before the old ones stop", self.target)

    # -- notices from workers --------------------------------------------------------------

    def _read_notices(self) -> None:
        data = _drain(self.notify_r)
        lines = (self._notify_buf + data).split(b"\n")
        self._notify_buf = lines.pop()
        for line in lines:
            what, _, pid_text = line.decode("ascii", "replace").partition(" ")
            child = self.children.get(int(pid_text)) if pid_text.isdigit() else None
            if child is None:
                continue
            if what == "ready":
                child.ready = True
                self.ever_ready = True
                self.backoff = 0.0
            elif what == "retire" and not child.wants_replacement:
                child.wants_replacement = True
                log.info("worker %d asks to be replaced", child.pid)

    # -- supervision -----------------------------------------------------------------------

    def _check_children(self, now: float) -> None:
        timeout = self.cfg.timeout
        for child in list(self.children.values()):
            if child.stopping_since is not None:
                if not child.killed and now >= child.stop_deadline:
                    log.warning("worker %d still running %.0f s after it was told to stop: killing it",
                                child.pid, now - child.stopping_since)
                    self._kill(child, signal.SIGKILL)
                    child.killed = True
                continue
            count = _worker.beat_count(child.beat)
            if count != child.seen:
                child.seen = count
                child.changed_at = now
            elif timeout and now - child.changed_at > timeout:
                log.error("worker %d timed out: no progress for %.1f s (--timeout %g): killing it",
                          child.pid, now - child.changed_at, timeout)
                self._kill(child, signal.SIGKILL)
                child.killed = True
                child.stopping_since = now

    def _manage(self, now: float) -> None:
        live = [c for c in self.children.values() if c.stopping_since is None]
        fresh = sorted((c for c in live if c.gen == self.gen and not c.wants_replacement), key=lambda c: c.age)
        outgoing = sorted((c for c in live if c.gen != self.gen or c.wants_replacement), key=lambda c: c.age)
        # Too many (SIGTTOU): the oldest go.
        while len(fresh) > self.target:
            self._retire(fresh.pop(0), now)
        while len(fresh) < self.target and now >= self.spawn_after:
            fresh.append(self._spawn(now))
        ready = sum(1 for c in fresh if c.ready)
        if not self.announced and ready >= self.target:
            self.announced = True
            try:
                self.ready([lst.address for lst in self.listeners])
            except Exception:
                log.exception("the ready callback failed")
        # The workers being replaced stop as their replacements are ready:
        # the ready ones stay while the new ones alone are short of the target.
        for c in [c for c in outgoing if not c.ready]:
            outgoing.remove(c)
            self._retire(c, now)
        while outgoing and ready + len(outgoing) > self.target:
            self._retire(outgoing.pop(0), now)

    def _retire(self, child: _Child, now: float) -> None:
        child.stopping_since = now
        child.stop_deadline = now + self.cfg.graceful_timeout + KILL_MARGIN
        self._kill(child, signal.SIGTERM)

    def _spawn(self, now: float) -> _Child:
        beat = mmap.mmap(-1, mmap.PAGESIZE)
        self.age += 1
        spec = _worker.WorkerSpec(self.cfg, [lst.fd for lst in self.listeners], self.notify_w, beat, self.pid,
                                  self.load, self._period(), multiprocess=self.target > 1)
        sys.stdout.flush()
        sys.stderr.flush()
        # Signals wait until the child has set its own handlers.
        old = signal.pthread_sigmask(signal.SIG_BLOCK, _worker._MASTER_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                self._in_child(spec)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        child = _Child(pid, self.gen, self.age, beat, now)
        self.children[pid] = child
        log.debug("started worker %d (generation %d)", pid, self.gen)
        return child

    def _in_child(self, spec: _worker.WorkerSpec) -> None:
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            for fd in (self.wake_r, self.wake_w, self.notify_r):
                os.close(fd)
            for child in self.children.values():
                child.beat.close()
            self.children = {}
            code = _worker.run(spec)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: B902 - the child must end here, whatever happened
            log.exception("worker %d failed", os.getpid())
            code = 1
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
                logging.shutdown()
            finally:
                os._exit(code)

    def _reap(self, block: bool = False) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            except InterruptedError:  # pragma: no cover - PEP 475 retries
                continue
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is None:
                continue
            child.beat.close()
            code = _exit_code(status)
            how = f"exit status {code}" if code >= 0 else f"signal {signal.Signals(-code).name}"
            if child.stopping_since is not None or self.stopping is not None:
                log.info("worker %d stopped (%s)", pid, how)
                continue
            if child.ready:
                log.warning("worker %d died (%s); starting another", pid, how)
                continue
            if code == _worker.BOOT_ERROR and not self.ever_ready:
                log.error("worker %d could not boot: stopping", pid)
                self.exit_code = 1
                self._stop(graceful=False)
                continue
            self.backoff = min(BACKOFF_MOST, self.backoff * 2 or BACKOFF_FIRST)
            self.spawn_after = time.monotonic() + self.backoff
            log.error("worker %d could not boot (%s); trying again in %g s", pid, how, self.backoff)

    def _kill(self, child: _Child, sig: int) -> None:
        try:
            os.kill(child.pid, sig)
        except ProcessLookupError:
            pass

    def _kill_all(self, sig: int) -> None:
        for child in list(self.children.values()):
            self._kill(child, sig)


def _exit_code(status: int) -> int:
    """The exit status, or minus the signal that ended the process."""
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _print_addresses(addresses: List[str]) -> None:
    for address in addresses:
        print(f"listening on {address}", flush=True)


def _drain(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            break
        except OSError as exc:  # pragma: no cover
            if exc.errno == errno.EINTR:
                continue
            raise
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)
