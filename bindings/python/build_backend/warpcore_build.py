"""A PEP 517 build backend for the ``warpcore`` package, with no dependencies.

``build_wheel`` runs ``cargo build --release --lib`` in the Rust crate's root
(the checkout, two levels up, or ``rust/`` inside an sdist, or
``$WARPCORE_SOURCE_DIR``) and packs the ``warpcore`` package together with
``libwarpcore.so`` into a platform wheel. ``$CARGO`` names cargo.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

NAME = "warpcore"
VERSION = "0.1.0"
HERE = Path(__file__).resolve().parent.parent  # bindings/python
LIB = "libwarpcore.dylib" if sys.platform == "darwin" else "libwarpcore.so"
SUMMARY = "Python bindings (ctypes) and a WSGI server for libwarpcore, a multi-core HTTP/1.1 server engine"
# What an sdist carries of the crate, under rust/.
CRATE_FILES = ["Cargo.toml", "Cargo.lock", "cbindgen.toml", "src", "include", "benches"]


def _crate_root() -> Path:
    env = os.environ.get("WARPCORE_SOURCE_DIR")
    candidates = [Path(env)] if env else [HERE / "rust", HERE.parent.parent]
    for c in candidates:
        if (c / "Cargo.toml").is_file():
            return c
    raise RuntimeError(
        "cannot find the libwarpcore crate (Cargo.toml) in " + ", ".join(str(c) for c in candidates)
        + "; set WARPCORE_SOURCE_DIR to the checkout"
    )


def _build_library() -> Path:
    root = _crate_root()
    cargo = os.environ.get("CARGO", "cargo")
    if shutil.which(cargo) is None:
        raise RuntimeError(f"cargo ({cargo}) is not on PATH: it is needed to build libwarpcore")
    target = Path(os.environ.get("CARGO_TARGET_DIR", root / "target"))
    print(f"warpcore_build: {cargo} build --release --lib in {root}", file=sys.stderr, flush=True)
    # The library that ships carries its symbol versions, as make builds it.
    env = dict(os.environ, WARPCORE_SYMBOL_VERSIONS="1")
    subprocess.run([cargo, "build", "--release", "--lib"], cwd=root, check=True, env=env)
    lib = target / "release" / LIB
    if not lib.is_file():
        raise RuntimeError(f"cargo finished but {lib} is missing")
    return lib


def _tag() -> str:
    plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    return f"py3-none-{plat}"


def _metadata() -> str:
    return (
        "Metadata-Version: 2.1\n"
        f"Name: {NAME}\n"
        f"Version: {VERSION}\n"
        f"Summary: {SUMMARY}\n"
        "License: MIT OR Apache-2.0\n"
        "Requires-Python: >=3.8\n"
    )


def _scripts() -> List[Tuple[str, str]]:
    """The console scripts of pyproject.toml's [project.scripts] (name, the
    object reference), read without a TOML parser (none before 3.11)."""
    out = []
    section = None
    for line in (HERE / "pyproject.toml").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("["):
            section = line
        elif section == "[project.scripts]" and "=" in line:
            name, _, value = line.partition("=")
            out.append((name.strip().strip('"'), value.strip().strip('"')))
    return out


def _entry_points() -> str:
    """entry_points.txt: pip makes a command of each console script."""
    return "[console_scripts]\n" + "".join(f"{name} = {ref}\n" for name, ref in _scripts())


def _wheel_file() -> str:
    return f"Wheel-Version: 1.0\nGenerator: warpcore_build\nRoot-Is-Purelib: false\nTag: {_tag()}\n"


def _package_files() -> List[Tuple[str, Path]]:
    out = []
    pkg = HERE / NAME
    for p in sorted(pkg.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc" and p.name != LIB:
            out.append((f"{NAME}/{p.relative_to(pkg).as_posix()}", p))
    return out


def _record_line(arcname: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{arcname},sha256={digest},{len(data)}"


def _dist_info() -> str:
    return f"{NAME}-{VERSION}.dist-info"


# --- PEP 517 hooks -------------------------------------------------------------------


def get_requires_for_build_wheel(config_settings: Optional[Dict] = None) -> List[str]:
    return []


def get_requires_for_build_sdist(config_settings: Optional[Dict] = None) -> List[str]:
    return []


def prepare_metadata_for_build_wheel(metadata_directory: str, config_settings: Optional[Dict] = None) -> str:
    d = Path(metadata_directory) / _dist_info()
    d.mkdir(parents=True, exist_ok=True)
    (d / "METADATA").write_text(_metadata())
    (d / "WHEEL").write_text(_wheel_file())
    (d / "entry_points.txt").write_text(_entry_points())
    return d.name


def build_wheel(wheel_directory: str, config_settings: Optional[Dict] = None, metadata_directory: Optional[str] = None) -> str:
    lib = _build_library()
    name = f"{NAME}-{VERSION}-{_tag()}.whl"
    path = Path(wheel_directory) / name
    records: List[str] = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:

        def add(arcname: str, data: bytes, mode: int = 0o644) -> None:
            info = zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = (mode & 0xFFFF) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
            records.append(_record_line(arcname, data))

        for arcname, p in _package_files():
            add(arcname, p.read_bytes())
        add(f"{NAME}/{LIB}", lib.read_bytes(), 0o755)
        di = _dist_info()
        add(f"{di}/METADATA", _metadata().encode())
        add(f"{di}/WHEEL", _wheel_file().encode())
        add(f"{di}/entry_points.txt", _entry_points().encode())
        add(f"{di}/top_level.txt", f"{NAME}\n".encode())
        records.append(f"{di}/RECORD,,")
        zf.writestr(zipfile.ZipInfo(f"{di}/RECORD", date_time=(2020, 1, 1, 0, 0, 0)), "\n".join(records) + "\n")
    return name


def build_sdist(sdist_directory: str, config_settings: Optional[Dict] = None) -> str:
    root = _crate_root()
    base = f"{NAME}-{VERSION}"
    name = f"{base}.tar.gz"
    path = Path(sdist_directory) / name

    def skip(info: tarfile.TarInfo) -> Optional[tarfile.TarInfo]:
        parts = Path(info.name).parts
        if "__pycache__" in parts or info.name.endswith(".pyc") or "target" in parts:
            return None
        return info

    with tarfile.open(path, "w:gz") as tf:
        for item in ["pyproject.toml", "build_backend", NAME, "README.md"]:
            if (HERE / item).exists():
                tf.add(HERE / item, f"{base}/{item}", filter=skip)
        for item in CRATE_FILES:
            if (root / item).exists():
                tf.add(root / item, f"{base}/rust/{item}", filter=skip)
        pkg_info = _metadata().encode()
        info = tarfile.TarInfo(f"{base}/PKG-INFO")
        info.size = len(pkg_info)
        tf.addfile(info, io.BytesIO(pkg_info))
    return name
