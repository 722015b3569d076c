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
``requirements/dev.lock`` pins), with ``-S`` so that no other site-packages is on the path.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
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


def site_dir(python: str = sys.executable) -> Path:
    """The layer's packages installed for ``python`` (its own pip, its own wheels), made once
    per interpreter version and requirements."""
    version = subprocess.run(  # noqa: S603 (an interpreter we were given, fixed code)
        [python, "-c", "import sys; print(f'{sys.version_info[0]}{sys.version_info[1]}')"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    wanted = LAYER_REQUIREMENTS.read_text() + "\n".join(runtime_pins())
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
            str(LAYER_REQUIREMENTS),
            *runtime_pins(),
        ],
        check=True,
        capture_output=True,  # pip's notices about the local index are not ours to print
    )
    (site / ".complete").touch()
    return site


def base_python(python: str = sys.executable) -> str:
    """The interpreter under a virtualenv's (``-S`` then sees no package of the virtualenv)."""
    return getattr(sys, "_base_executable", python) if python == sys.executable else python


def lambda_command(python: str = sys.executable) -> list[str]:
    """The interpreter and flags a cold-start measurement runs (``-S``: only ``PYTHONPATH``)."""
    return [base_python(python), "-S"]


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
    site = site_dir(python)
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
    }
    if not traced:
        environment["POWERTOOLS_TRACE_DISABLED"] = "true"
    return environment
