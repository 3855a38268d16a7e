"""`pip install ./bindings/python` builds the library with cargo and ships it
inside the package, offline (no index, no build dependencies)."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile

from .conftest import PACKAGE_DIR


def test_pip_install_offline_ships_the_library(tmp_path):
    target = tmp_path / "site"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "WARPCORE_LIBRARY")}
    env["PIP_NO_INDEX"] = "1"  # offline: nothing may be downloaded
    p = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--disable-pip-version-check",
         "--target", str(target), str(PACKAGE_DIR)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    lib = target / "warpcore" / "libwarpcore.so"
    assert lib.is_file()
    # The installed copy loads its own library, from anywhere.
    p = subprocess.run(
        [sys.executable, "-c", "import warpcore, warpcore.wsgi; print(warpcore.LIBRARY_PATH); print(warpcore.version())"],
        capture_output=True,
        text=True,
        env=dict(env, PYTHONPATH=str(target)),
        cwd=tmp_path,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0] == str(lib)


def test_wheel_and_sdist(tmp_path):
    sys.path.insert(0, str(PACKAGE_DIR / "build_backend"))
    try:
        import warpcore_build
    finally:
        sys.path.pop(0)
    name = warpcore_build.build_wheel(str(tmp_path))
    with zipfile.ZipFile(tmp_path / name) as zf:
        names = set(zf.namelist())
        assert {"warpcore/__init__.py", "warpcore/wsgi.py", "warpcore/py.typed", "warpcore/libwarpcore.so"} <= names
        record = zf.read("warpcore-0.1.0.dist-info/RECORD").decode()
        assert "warpcore/libwarpcore.so,sha256=" in record
        assert "Root-Is-Purelib: false" in zf.read("warpcore-0.1.0.dist-info/WHEEL").decode()
        entry_points = zf.read("warpcore-0.1.0.dist-info/entry_points.txt").decode()
        assert entry_points == "[console_scripts]\nwarpcore = warpcore._cli:main\n"
        assert "warpcore-0.1.0.dist-info/entry_points.txt,sha256=" in record
    sdist = warpcore_build.build_sdist(str(tmp_path))
    with tarfile.open(tmp_path / sdist) as tf:
        names = set(tf.getnames())
    assert "warpcore-0.1.0/rust/Cargo.toml" in names and "warpcore-0.1.0/warpcore/_ffi.py" in names
    assert "warpcore-0.1.0/pyproject.toml" in names
    assert not any("/target/" in n for n in names)


def test_the_warpcore_command_is_installed_in_a_venv(tmp_path):
    """pip install makes the console script ``warpcore``; it serves an
    application from the venv, with nothing of the checkout on its path."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "WARPCORE_LIBRARY")}
    p = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-index", "--no-deps",
         "--disable-pip-version-check", str(PACKAGE_DIR)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    command = venv / "bin" / "warpcore"
    assert command.is_file() and os.access(command, os.X_OK)
    assert command.read_text().startswith(f"#!{venv / 'bin' / 'python'}")
    p = subprocess.run([str(command), "--help"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert p.returncode == 0 and "--workers" in p.stdout and "--loops" in p.stdout
    (tmp_path / "hello.py").write_text(
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [])\n"
        "    return [b'installed']\n"
    )
    from .supervise import Master, get

    with Master(tmp_path, [], command=[str(command), "hello:app", "-b", "127.0.0.1:0"], env=env, app="") as m:
        assert get(m.address()).body == b"installed"
