"""What a Lambda execution environment imports from: the layer's packages alone, on Lambda's
path, with Lambda's environment variables.

Measuring a handler's import in the development virtualenv counts packages Lambda never has
(httpx imports ``rich`` and ``click`` when they are installed; X-Ray's ``patch_all`` imports
every library it knows that is installed, ``psycopg`` included) and misses what Lambda's
environment changes: outside Lambda the X-Ray SDK makes two botocore clients for centralized
sampling when it is imported (about 0.5 s), which on Lambda (``LAMBDA_TASK_ROOT`` set) it
never does, while Powertools' Tracer, disabled outside Lambda, patches libraries on Lambda.

So the cold-start benchmarks import in an interpreter that sees only: the function's code,
the layer's pinned packages (``layers/common/requirements.txt``, installed once into
``.local-data/lambda-site/``) and boto3 as the runtime provides it (the version
``requirements/dev.lock`` pins), with ``-S`` so that no other site-packages is on the path;
by default with the runtime's Python version (the template's, python3.13: the SAM
virtualenv's interpreter, or one on ``PATH``), else this one.

Timing: the CPU time of the importing process (``time.process_time``) beside its wall time.
On a shared machine the wall time of an import also counts the time the process waited for a
CPU; its CPU time is what the import costs, and what a Lambda execution environment, which
has its CPU share to itself, would spend.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from bench.common import ROOT

LAYER_REQUIREMENTS = ROOT / "layers/common/requirements.txt"
DEV_LOCK = ROOT / "requirements/dev.lock"
SITES = ROOT / ".local-data/lambda-site"
# Lambda's runtime brings these (the layer does not ship them).
RUNTIME_PACKAGES = ("boto3", "s3transfer")


def runtime_pins() -> list[str]:
    pins = {
        line.split("==")[0]: line.strip()
        for line in DEV_LOCK.read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    return [pins[name] for name in RUNTIME_PACKAGES]


def site_dir(python: str = sys.executable, requirements: Path = LAYER_REQUIREMENTS) -> Path:
    """The layer's packages installed for ``python`` (its own pip, its own wheels), made once
    per interpreter version and requirements."""
    version = subprocess.run(  # noqa: S603 (an interpreter we were given, fixed code)
        [python, "-c", "import sys; print(f'{sys.version_info[0]}{sys.version_info[1]}')"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    wanted = requirements.read_text() + "\n".join(runtime_pins())
    digest = hashlib.sha256(wanted.encode()).hexdigest()[:12]
    site = SITES / f"py{version}-{digest}"
    if (site / ".complete").exists():
        return site
    shutil.rmtree(site, ignore_errors=True)
    site.mkdir(parents=True)
    subprocess.run(  # noqa: S603 (the interpreter's own pip, our pinned requirements)
        [
            python,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",  # every package is pinned in the file: nothing else may come in
            "--target",
            str(site),
            "-r",
            str(requirements),
            *runtime_pins(),
        ],
        check=True,
        capture_output=True,  # pip's notices about the local index are not ours to print
    )
    (site / ".complete").touch()
    return site


@cache
def base_python(python: str = sys.executable) -> str:
    """The interpreter under a virtualenv's (``-S`` then sees no package of the virtualenv)."""
    result = subprocess.run(  # noqa: S603 (an interpreter we were given, fixed code)
        [python, "-c", "import sys; print(getattr(sys, '_base_executable', sys.executable))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def lambda_command(python: str = sys.executable) -> list[str]:
    """The interpreter and flags a cold-start measurement runs (``-S``: only ``PYTHONPATH``)."""
    return [base_python(python), "-S"]


@cache
def runtime_python() -> str:
    """An interpreter of the Lambda runtime's version (the template's), or this one."""
    from ops.bytecode import runtime_version

    major, minor = runtime_version()
    candidates = [
        os.environ.get("LAMBDA_PYTHON", ""),
        str(ROOT / ".venv-sam/bin/python"),  # `make validate` makes it with the runtime's Python
        shutil.which(f"python{major}.{minor}") or "",
    ]
    for candidate in filter(None, candidates):
        try:
            found = subprocess.run(  # noqa: S603 (an interpreter found above, fixed code)
                [candidate, "-c", "import sys; print(sys.version_info[:2])"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            continue
        if found == str((major, minor)):
            return candidate
    return sys.executable


def version_of(python: str) -> str:
    return subprocess.run(  # noqa: S603 (an interpreter we were given, fixed code)
        [python, "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@dataclass(frozen=True)
class ImportTime:
    """Medians of fresh interpreters importing one module, as on Lambda."""

    wall_s: float
    cpu_s: float


_TIMED_IMPORT = (
    "import json, time; wall, cpu = time.perf_counter(), time.process_time(); import {module}; "
    "print(json.dumps([time.perf_counter() - wall, time.process_time() - cpu]))"
)


def import_times(
    modules: Sequence[str], repeats: int = 7, python: str | None = None, code: Path = ROOT
) -> dict[str, ImportTime]:
    """Each module imported in ``repeats`` fresh interpreters, the modules interleaved (a
    change in the machine's load then weighs on all of them alike); one round first, not
    counted, writes the bytecode, as `make build` ships it."""
    measured = compared_import_times({"": code}, modules, repeats, python)
    return {module: measured[("", module)] for module in modules}


def compared_import_times(
    codes: dict[str, Path], modules: Sequence[str], repeats: int = 7, python: str | None = None
) -> dict[tuple[str, str], ImportTime]:
    """``import_times`` of several checkouts (label -> path), all interleaved in one run."""
    python = python or runtime_python()
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {
        (label, module): [] for label in codes for module in modules
    }
    for round_ in range(repeats + 1):
        for label, code in codes.items():
            for module in modules:
                result = subprocess.run(  # noqa: S603 (our interpreter, fixed code)
                    [*lambda_command(python), "-c", _TIMED_IMPORT.format(module=module)],
                    capture_output=True,
                    text=True,
                    check=True,
                    env=lambda_environment(function_of(module), python=python, code=code),
                )
                if round_:
                    wall, cpu = json.loads(result.stdout.strip().splitlines()[-1])
                    samples[(label, module)].append((wall, cpu))
    return {
        key: ImportTime(
            statistics.median(wall for wall, _ in values),
            statistics.median(cpu for _, cpu in values),
        )
        for key, values in samples.items()
    }


def function_of(module: str) -> str:
    """The function a handler module belongs to (``reader.handler``: ``reader``)."""
    return module.split(".")[0] if module.endswith(".handler") else "bench"


def lambda_environment(
    function: str = "bench",
    *,
    traced: bool = True,
    python: str = sys.executable,
    code: Path = ROOT,
) -> dict[str, str]:
    """Lambda's search path (the function's code, then the layer, then the runtime's boto3)
    and the variables Lambda sets that the imported packages read at import time. ``code``:
    the checkout whose functions and layer are imported (another one, to compare)."""
    site = site_dir(python, code / "layers/common/requirements.txt")
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": os.pathsep.join(
            [str(code / "functions"), str(code / "layers/common"), str(site)]
        ),
        "LAMBDA_TASK_ROOT": str(code / "functions"),
        "AWS_LAMBDA_FUNCTION_NAME": function,
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": function,
        **template_constants(code),
    }
    if not traced:
        environment["POWERTOOLS_TRACE_DISABLED"] = "true"
    return environment


def template_constants(code: Path = ROOT) -> dict[str, str]:
    """The variables template.yaml gives every function whose values are plain text (not a
    parameter's): what the deployed code reads at import, ``PYDANTIC_DISABLE_PLUGINS`` among
    them, is then what a cold start measured here reads."""
    from local.template import load_template

    globals_ = load_template(code / "template.yaml").get("Globals", {}).get("Function", {})
    variables = globals_.get("Environment", {}).get("Variables", {})
    return {name: value for name, value in variables.items() if isinstance(value, str)}
