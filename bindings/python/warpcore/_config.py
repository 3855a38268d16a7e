"""The command line's settings: one table for the flags, the config file
(``-c FILE``, a Python file as gunicorn's) and the defaults.

The value of a setting is, from lowest to highest: its default, the config
file's module-level name, the command line. ``load()`` reads all three; the
arbiter calls it again on SIGHUP, so a changed config file takes effect
then (the command line still wins).
"""

from __future__ import annotations

import argparse
import os
import runpy
import types
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ._forwarded import Trust
from ._server import NO_LIMIT
from ._tls import TLS, TLSError
from ._sockets import AddressError, normalize

__all__ = ["Config", "SETTINGS", "ConfigError", "load", "build_parser", "tls_setup"]

class ConfigError(ValueError):
    """A setting with a bad value, or a config file that cannot be read."""


# --- value parsers: a text or (from a config file) a Python value -> the setting ---


def _int_at_least(low: int, high: Optional[int] = None) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        try:
            n = int(value)
            if isinstance(value, float) and n != value:
                raise ValueError
        except (TypeError, ValueError):
            raise ValueError(f"wants a whole number, not {value!r}") from None
        if n < low or (high is not None and n > high):
            raise ValueError(f"{n} is out of range ({low} to {high})" if high is not None else f"{n} is below {low}")
        return n

    return parse


def _seconds(value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"wants seconds, not {value!r}") from None
    if not (x >= 0 and x < float("inf")):
        raise ValueError(f"wants a finite, non-negative number of seconds, not {value!r}")
    return x


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1"):
        return True
    if isinstance(value, str) and value.lower() in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"wants True or False, not {value!r}")


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"wants a string, not {value!r}")
    return value


def _optional_path(value: Any) -> Optional[str]:
    if value is None:
        return None
    return os.fspath(value) if not isinstance(value, str) else value


def _bind(value: Any) -> List[str]:
    """One address, or (from a config file) a list of them."""
    items = [value] if isinstance(value, str) else list(value)
    out = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"wants addresses as strings, not {item!r}")
        try:
            out.append(normalize(item))
        except AddressError as exc:
            raise ValueError(str(exc)) from None
    return out


def _forwarded_ips(value: Any) -> str:
    """Addresses and networks, comma separated (or, from a config file, a
    list of them), checked here: a bad one is a configuration error, not a
    worker that cannot boot (again and again, after a SIGHUP)."""
    items = value.split(",") if isinstance(value, str) else list(value)
    if not all(isinstance(i, str) for i in items):
        raise ValueError(f"wants addresses and networks as strings, not {value!r}")
    text = ",".join(i.strip() for i in items if i.strip())
    Trust(text)  # raises ValueError naming the bad item
    return text


def _root_path(value: Any) -> str:
    text = _text(value).rstrip("/")
    if text and not text.startswith("/"):
        raise ValueError(f"wants a path starting with '/', not {value!r}")
    return text


_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(value: Any) -> int:
    """``none`` (no limit), or bytes with an optional K/M/G/T suffix
    (``100M``, ``1.5G``; ``KiB``/``MB`` spellings too)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value <= NO_LIMIT:
            raise ValueError(f"{value} is out of range")
        return value
    if value is None:
        return NO_LIMIT
    t = str(value).strip().upper()
    if t in ("NONE", "UNLIMITED", "INF"):
        return NO_LIMIT
    for suffix in ("IB", "B"):
        if t.endswith(suffix) and len(t) > len(suffix) and t[-len(suffix) - 1] in "KMGT":
            t = t[: -len(suffix)]
            break
    unit = t[-1:] if t[-1:] in "KMGT" else ""
    try:
        n = float(t[: len(t) - len(unit)])
    except ValueError:
        raise ValueError(f"wants bytes (100M, 1G) or 'none', not {value!r}") from None
    if not 0 <= n < float(NO_LIMIT) or int(n * _SIZE_UNITS[unit]) >= NO_LIMIT:  # nan fails too
        raise ValueError(f"{value!r} is out of range")
    return int(n * _SIZE_UNITS[unit])


def _choice(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = _text(value).lower()
        if text not in choices:
            raise ValueError(f"wants one of {', '.join(choices)}, not {value!r}")
        return text

    return parse


def _tls_version(value: Any) -> str:
    # 1.3 from a config file reads as the string.
    return _choice("1.2", "1.3")(str(value) if isinstance(value, float) else value)


def _any(value: Any) -> Any:
    return value


def _files(value: Any) -> List[str]:
    items = [value] if isinstance(value, str) else list(value)
    return [os.fspath(i) for i in items]


class Setting:
    """One setting: its name (gunicorn's, also the config file's), its
    flags, how a value is read, its default and its help."""

    def __init__(
        self,
        name: str,
        flags: Sequence[str],
        parse: Callable[[Any], Any],
        default: Any,
        help: str,
        *,
        metavar: Optional[str] = None,
        action: Optional[str] = None,
        aliases: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.flags = list(flags)
        self.parse = parse
        self.default = default
        self.help = help
        self.metavar = metavar
        self.action = action
        self.aliases = list(aliases)


def _default_workers() -> int:
    # gunicorn's default: $WEB_CONCURRENCY, else 1.
    try:
        return max(1, int(os.environ.get("WEB_CONCURRENCY", "1")))
    except ValueError:
        return 1


SETTINGS: List[Setting] = [
    Setting("bind", ["-b", "--bind"], _bind, ["127.0.0.1:8000"], "an address to listen on, repeatable: HOST:PORT, "
            "[V6]:PORT, unix:PATH or fd://N (a listening socket this process inherited); default 127.0.0.1:8000. "
            "Sockets systemd passes (LISTEN_FDS, LISTEN_PID) replace these, as in gunicorn",
            metavar="ADDRESS", action="append"),
    Setting("workers", ["-w", "--workers", "--processes"], _int_at_least(1), _default_workers, "worker processes "
            "(default $WEB_CONCURRENCY or 1): each runs the application with its own interpreter, so they use "
            "several cores despite the GIL", metavar="N", aliases=["processes"]),
    Setting("threads", ["--threads"], _int_at_least(0), 8, "application threads per worker process (default 8; "
            "0 runs the application on the event loops themselves: fastest for quick applications)", metavar="N"),
    Setting("loops", ["--loops"], _int_at_least(0), 1, "libwarpcore event loops per worker process (default 1; 0: "
            "one per core); they share one GIL, so more than one helps only when the application releases it",
            metavar="N"),
    Setting("interface", ["--interface"], _choice("wsgi", "asgi"), "wsgi", "the application's interface: wsgi "
            "(default) or asgi (served by warpcore.asgi)"),
    Setting("timeout", ["-t", "--timeout"], _seconds, 30.0, "a worker whose application makes no progress for this "
            "long (every application thread in one call that sends and reads nothing, or with --threads 0 an event "
            "loop held by one) and one that stops reporting is killed and replaced; 0 turns it off (default 30)",
            metavar="SECONDS"),
    Setting("graceful_timeout", ["--graceful-timeout"], _seconds, 30.0, "how long a stopping worker lets requests "
            "in flight finish before it closes their connections (default 30)", metavar="SECONDS"),
    Setting("keepalive", ["--keep-alive"], _seconds, None, "how long an idle keep-alive connection stays open "
            "(default: the engine's idle timeout)", metavar="SECONDS", aliases=["keep_alive"]),
    Setting("max_requests", ["--max-requests"], _int_at_least(0), 0, "a worker that has handled this many requests "
            "is replaced gracefully (its replacement first, then it drains); 0: never (default)", metavar="N"),
    Setting("max_requests_jitter", ["--max-requests-jitter"], _int_at_least(0), 0, "adds a random 0..N to each "
            "worker's --max-requests, so that workers do not all restart at once", metavar="N"),
    Setting("limit_request_line", ["--limit-request-line"], _int_at_least(0, 1 << 20), None, "the longest request "
            "line in bytes, longer ones get 414 (default: the engine's 8 KiB; 0: as long as the head may be)",
            metavar="BYTES"),
    Setting("limit_request_fields", ["--limit-request-fields"], _int_at_least(0, 100), None, "the most header "
            "fields a request may have, more get 431 (1 to 100; default and 0: 100, the engine's most)",
            metavar="N"),
    Setting("limit_request_field_size", ["--limit-request-field_size", "--limit-request-field-size"],
            _int_at_least(0), None, "the largest header field (name and value) in bytes, larger ones get 431 "
            "(default and 0: no limit but the engine's on the whole head, 32 KiB)", metavar="BYTES"),
    Setting("forwarded_allow_ips", ["--forwarded-allow-ips"], _forwarded_ips,
            lambda: os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1"), "proxies (addresses and networks, "
            "comma separated, '*' for any) whose X-Forwarded-For and X-Forwarded-Proto set REMOTE_ADDR and "
            "wsgi.url_scheme; default $FORWARDED_ALLOW_IPS or 127.0.0.1,::1; peers on a Unix socket are "
            "always allowed, as in gunicorn", metavar="IPS"),
    Setting("root_path", ["--root-path"], _root_path, "", "the URL path the application is mounted at "
            "(SCRIPT_NAME): taken off the front of PATH_INFO; a request outside it gets 500, as in gunicorn",
            metavar="PATH", aliases=["script_name"]),
    Setting("pidfile", ["-p", "--pid"], _optional_path, None, "write the master process's PID to FILE (removed "
            "at exit)", metavar="FILE", aliases=["pid"]),
    Setting("accesslog", ["--access-logfile"], _optional_path, None, "the access log: a file, or '-' for "
            "standard output; reopened on SIGUSR1 (default: none)", metavar="FILE",
            aliases=["access_logfile", "access_log"]),
    Setting("errorlog", ["--error-logfile", "--log-file"], _optional_path, "-", "the error log: a file, or '-' "
            "for standard error (default); reopened on SIGUSR1", metavar="FILE", aliases=["error_logfile"]),
    Setting("loglevel", ["--log-level"], _choice("debug", "info", "warning", "error", "critical"), "info",
            "the error log's level (default info)", metavar="LEVEL", aliases=["log_level"]),
    Setting("reload", ["--reload"], _bool, False, "development: replace the workers when a source file of the "
            "application changes (polled every second)", action="store_true"),
    Setting("reload_extra_files", ["--reload-extra-file"], _files, [], "with --reload, also watch FILE "
            "(repeatable)", metavar="FILE", action="append"),
    Setting("backlog", ["--backlog"], _int_at_least(1), 2048, "the listen queue of the sockets the master opens "
            "(default 2048)", metavar="N"),
    Setting("max_body_size", ["--max-body-size"], parse_size, NO_LIMIT, "largest request body accepted, larger "
            "ones get 413: bytes, with an optional K, M, G or T suffix (powers of 1024), or 'none' (the default: "
            "no limit, like gunicorn; bodies over 1 MiB stream through wsgi.input, so memory stays bounded "
            "whatever the size)", metavar="BYTES"),
    Setting("sched_batch", ["--sched-batch"], _bool, False, "run the event loops and the application threads "
            "under Linux's SCHED_BATCH scheduling policy: a woken thread does not preempt the running one, so "
            "requests and answers cross between them in batches", action="store_true"),
    Setting("certfile", ["--certfile"], _optional_path, None, "serve HTTPS on every --bind address with this "
            "certificate chain (PEM, the server's certificate first; it may hold the key too, as in gunicorn); "
            "read again on SIGHUP", metavar="FILE"),
    Setting("keyfile", ["--keyfile"], _optional_path, None, "the certificate's private key (PEM, unencrypted; "
            "default: in --certfile)", metavar="FILE"),
    Setting("ca_certs", ["--ca-certs"], _optional_path, None, "the CA certificates (PEM) that client "
            "certificates are checked against, with --cert-reqs 1 or 2", metavar="FILE"),
    Setting("cert_reqs", ["--cert-reqs"], _int_at_least(0, 2), 0, "client certificates, as gunicorn's "
            "(ssl.CERT_*): 0 not asked for (default), 1 optional, 2 required", metavar="N"),
    Setting("ssl_version", ["--ssl-version"], _any, None, "accepted for gunicorn's command lines and ignored "
            "with a warning, as gunicorn 21 and later do: see --tls-min-version", metavar="VERSION"),
    Setting("tls_min_version", ["--tls-min-version"], _tls_version, "1.2", "the lowest TLS version "
            "accepted: 1.2 (default) or 1.3", metavar="VERSION"),
    Setting("wsgi_app", [], _text, None, "", aliases=["app"]),
]

_BY_NAME: Dict[str, Setting] = {}
for _s in SETTINGS:
    _BY_NAME[_s.name] = _s
    for _a in _s.aliases:
        _BY_NAME[_a] = _s

#: gunicorn settings and server hooks a config file may hold that this
#: server does not have: named in a warning, not an error.
_UNSUPPORTED_HINT = "not supported by warpcore: ignored"


class Config:
    """The settings in effect: one attribute per setting, plus ``config``
    (the config file) and ``warnings`` (what reading it noticed)."""

    def __init__(self, values: Dict[str, Any], config_file: Optional[str] = None, warnings: Sequence[str] = ()) -> None:
        for s in SETTINGS:
            setattr(self, s.name, values[s.name])
        self.config = config_file
        self.warnings = list(warnings)
        # The TLS setup of certfile and the others, checked (see tls_setup).
        self.tls: Optional[TLS] = None
        # More keyword arguments for the worker's server (serve()'s settings).
        self.server_options: Dict[str, Any] = {}

    @classmethod
    def defaults(cls, **values: Any) -> "Config":
        """The defaults, with ``values`` (already parsed) instead of some."""
        merged = {s.name: _default(s) for s in SETTINGS}
        unknown = set(values) - set(merged)
        if unknown:
            raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
        merged.update(values)
        return cls(merged)

    def as_dict(self) -> Dict[str, Any]:
        return {s.name: getattr(self, s.name) for s in SETTINGS}

    def __repr__(self) -> str:
        return f"<Config {self.as_dict()!r}>"


def build_parser(prog: str) -> argparse.ArgumentParser:
    """The command line: every flag, with no defaults (a flag not given
    leaves the config file's value or the setting's default)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve a WSGI (or ASGI) application with libwarpcore: a master process supervises worker "
        "processes, which share the listening sockets it opens. Signals to the master: HUP reloads the "
        "configuration and the application (new workers first, then the old ones drain), USR1 reopens the "
        "logs, TTIN/TTOU add/remove a worker, TERM and QUIT stop gracefully, INT stops at once.",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("app", nargs="?", help="MODULE:NAME (or MODULE:FACTORY()) of the application")
    parser.add_argument("-c", "--config", metavar="FILE", help="a Python config file (as gunicorn's): "
                        "module-level names such as bind, workers, threads, timeout; flags given here win")
    for s in SETTINGS:
        if not s.flags:
            continue
        kw: Dict[str, Any] = {"dest": s.name, "help": s.help}
        if s.action == "store_true":
            kw["action"] = "store_const"
            kw["const"] = True
        else:
            kw["metavar"] = s.metavar
            if s.action == "append":
                kw["action"] = "append"
        parser.add_argument(*s.flags, **kw)
    return parser


def _default(s: Setting) -> Any:
    d = s.default
    if callable(d):
        return d()
    return list(d) if isinstance(d, list) else d


def read_config_file(path: str) -> Tuple[Dict[str, Any], List[str]]:
    """The settings a config file sets, and warnings about the names it has
    that are not settings. ``python:MODULE`` names a module instead."""
    if path.startswith("python:"):
        import importlib

        try:
            module = importlib.import_module(path[len("python:") :])
        except Exception as exc:
            raise ConfigError(f"config module {path[len('python:'):]}: {type(exc).__name__}: {exc}") from None
        names = vars(module)
    else:
        if not os.path.isfile(path):
            raise ConfigError(f"config file {path}: no such file")
        try:
            names = runpy.run_path(path, run_name="__config__")
        except Exception as exc:
            raise ConfigError(f"config file {path}: {type(exc).__name__}: {exc}") from None
    values: Dict[str, Any] = {}
    warnings = []
    for key, value in names.items():
        if key.startswith("_") or isinstance(value, types.ModuleType):
            continue
        s = _BY_NAME.get(key)
        if s is None:
            if not isinstance(value, type):
                warnings.append(f"config file {path}: {key} is {_UNSUPPORTED_HINT}")
            continue
        try:
            values[s.name] = s.parse(value)
        except ValueError as exc:
            raise ConfigError(f"config file {path}: {key}: {exc}") from None
    return values, warnings


def load(argv: Sequence[str], prog: str = "warpcore") -> Config:
    """The settings from the command line ``argv``, its config file and the
    defaults. Raises SystemExit for a malformed command line (argparse's
    usage message), ConfigError for a bad value."""
    parser = build_parser(prog)
    args = vars(parser.parse_args(list(argv)))
    values = {s.name: _default(s) for s in SETTINGS}
    warnings: List[str] = []
    config_file = args.pop("config", None)
    if config_file is not None:
        file_values, warnings = read_config_file(config_file)
        values.update(file_values)
    app = args.pop("app", None)
    if app is not None:
        values["wsgi_app"] = app
    for name, raw in args.items():
        s = _BY_NAME[name]
        try:
            if s.action == "append":
                value = [a for item in raw for a in s.parse(item)]
            else:
                value = s.parse(raw)
        except ValueError as exc:
            flag = next(f for f in s.flags if f.startswith("--"))
            raise ConfigError(f"{flag}: {exc}") from None
        values[name] = value
    if isinstance(values["forwarded_allow_ips"], str):
        # The default, from $FORWARDED_ALLOW_IPS, checked as the flag is (a
        # value the flag or the file gave reads the same again).
        try:
            values["forwarded_allow_ips"] = _forwarded_ips(values["forwarded_allow_ips"])
        except ValueError as exc:
            raise ConfigError(f"FORWARDED_ALLOW_IPS: {exc}") from None
    if values["limit_request_fields"] == 0:
        values["limit_request_fields"] = None  # gunicorn's 0, no limit: the engine's most
    if not values["wsgi_app"]:
        raise ConfigError("no application: name it as MODULE:NAME (or wsgi_app in the config file)")
    cfg = Config(values, config_file, warnings)
    cfg.tls = tls_setup(cfg)
    return cfg


def tls_setup(cfg: Config) -> Optional[TLS]:
    """The TLS setup the settings ask for (None without ``certfile``), its
    files read and checked now, as gunicorn checks them before any worker
    starts; ConfigError naming what is wrong. Adds to ``cfg.warnings``."""
    if cfg.ssl_version is not None:
        cfg.warnings.append("ssl_version is deprecated in gunicorn and ignored here too: TLS 1.2 and 1.3 are "
                            "accepted (--tls-min-version 1.3 for 1.3 only)")
    if cfg.certfile is None:
        if cfg.keyfile is not None:
            raise ConfigError("--keyfile needs --certfile (the certificate chain it is the key of)")
        if cfg.cert_reqs or cfg.ca_certs is not None:
            cfg.warnings.append("--ca-certs and --cert-reqs are ignored without --certfile (no TLS)")
        return None
    if cfg.cert_reqs and cfg.ca_certs is None:
        raise ConfigError(f"--cert-reqs {cfg.cert_reqs} asks clients for certificates: --ca-certs must name the "
                          "CA certificates (PEM) to check them against")
    try:
        return TLS(
            cfg.certfile,
            cfg.keyfile if cfg.keyfile is not None else cfg.certfile,
            client_auth=("none", "optional", "required")[cfg.cert_reqs],
            ca=cfg.ca_certs if cfg.cert_reqs else None,
            min_version=cfg.tls_min_version,
        )
    except TLSError as exc:
        raise ConfigError(f"TLS: {exc.message}") from None
