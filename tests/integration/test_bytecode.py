"""`make build` ships bytecode for the Lambda runtime (its code directories are read-only)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ops.bytecode import runtime_version

ROOT = Path(__file__).resolve().parents[2]
SAM_PYTHON = ROOT / ".venv-sam" / "bin" / "python"  # the runtime's Python version
APP_PYTHON = ROOT / ".venv" / "bin" / "python"

needs_sam = pytest.mark.skipif(
    not SAM_PYTHON.exists(), reason="no .venv-sam: `make validate` (or `make test`) creates it"
)


def _run(python: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 (our interpreters, fixed arguments)
        [str(python), *arguments], cwd=ROOT, capture_output=True, text=True, check=False
    )


def _build_like(tmp_path: Path) -> Path:
    """What `sam build` leaves: the functions folder and the layer's package, no bytecode."""
    build = tmp_path / "build"
    shutil.copytree(ROOT / "functions", build / "ReceiverFunction")
    shutil.copytree(ROOT / "layers/common/waituntil", build / "CommonLayer/python/waituntil")
    for cache in list(build.rglob("__pycache__")):
        shutil.rmtree(cache)
    return build


@needs_sam
def test_every_module_gets_checked_hash_bytecode_for_the_runtime(tmp_path: Path) -> None:
    # Given a build output without bytecode
    build = _build_like(tmp_path)
    major, minor = runtime_version()
    magic = _run(SAM_PYTHON, "-c", "import importlib.util as u; print(u.MAGIC_NUMBER.hex())")

    # When the build step compiles it with the runtime's Python
    completed = _run(SAM_PYTHON, "-m", "ops.bytecode", str(build))

    # Then every module has a .pyc for that version, hash-based and checked against its source
    # (PEP 552 flags 0b11), so zip timestamps cannot make it stale and an edit cannot go unseen
    assert completed.returncode == 0, completed.stderr
    modules = list(build.rglob("*.py"))
    assert len(modules) > 10
    for module in modules:
        pyc = module.parent / "__pycache__" / f"{module.stem}.cpython-{major}{minor}.pyc"
        header = pyc.read_bytes()[:8]
        assert header[:4].hex() == magic.stdout.strip(), module
        assert int.from_bytes(header[4:8], "little") == 0b11, module


def test_bytecode_for_another_python_version_is_refused(tmp_path: Path) -> None:
    # Given the app's Python (3.11), which is not the template's runtime
    build = _build_like(tmp_path)

    # When it is asked to write the build's bytecode
    completed = _run(APP_PYTHON, "-m", "ops.bytecode", str(build))

    # Then it refuses, and writes nothing a python3.13 runtime would ignore anyway
    assert completed.returncode != 0
    assert "must be written by python3.13" in completed.stderr
    assert not list(build.rglob("*.pyc"))


def test_make_build_compiles_after_sam_build() -> None:
    # Given what `make build` would run (make -n prints the recipe without running it)
    completed = subprocess.run(
        ["make", "-n", "build"],  # noqa: S607 (make from PATH, as a developer runs it)
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = completed.stdout.splitlines()

    # When the sam build and bytecode steps are found
    sam_build = next(i for i, line in enumerate(lines) if line.endswith("sam build"))
    bytecode = next(i for i, line in enumerate(lines) if "-m ops.bytecode .aws-sam/build" in line)

    # Then the bytecode is written after SAM has produced the build, with the SAM virtualenv's
    # python3.13
    assert bytecode > sam_build
    assert ".venv-sam/bin/python" in lines[bytecode]
