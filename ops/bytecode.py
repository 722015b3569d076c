"""Precompile a ``sam build`` output for the Lambda runtime: ``python3.13 -m ops.bytecode DIR``.

Lambda's code and layer directories are read-only, so Python cannot cache the bytecode it
compiles there: without ``.pyc`` files every cold start compiles every module it imports
(measured from process start to the first answer: docs/SCALE.md, "Cold start"). The files are
compiled by the runtime's own Python version (a ``.pyc`` is only used by the version that
wrote it), and hash-based: the ``.zip`` SAM uploads resets file times, which would make
timestamp-based ``.pyc`` files look stale; a checked hash stays valid exactly as long as the
source it was compiled from is unchanged, so a later edit can never run stale code.
"""

from __future__ import annotations

import compileall
import py_compile
import re
import sys
from pathlib import Path

from local.template import function_property, load_template, resources_of_type

INVALIDATION = py_compile.PycInvalidationMode.CHECKED_HASH


def runtime_version(template: dict[str, object] | None = None) -> tuple[int, int]:
    """The Python version of the template's functions (Globals: Runtime: python3.13)."""
    template = template or load_template()
    functions = resources_of_type(template, "AWS::Serverless::Function")
    runtimes = {str(function_property(template, name, "Runtime")) for name in functions}
    if len(runtimes) != 1:
        raise ValueError(f"expected one Python runtime for every function, found {runtimes}")
    match = re.fullmatch(r"python(\d+)\.(\d+)", runtimes.pop())
    if match is None:
        raise ValueError(f"not a Python runtime: {runtimes}")
    return int(match.group(1)), int(match.group(2))


def compile_build(build_dir: Path) -> int:
    """Compile every module under ``build_dir``; returns how many ``.py`` files there are."""
    wanted = runtime_version()
    if sys.version_info[:2] != wanted:
        raise SystemExit(
            f"bytecode must be written by python{wanted[0]}.{wanted[1]} (the Lambda runtime), "
            f"not {sys.version_info[0]}.{sys.version_info[1]}"
        )
    if not compileall.compile_dir(
        build_dir, quiet=1, workers=0, invalidation_mode=INVALIDATION, legacy=False
    ):
        raise SystemExit(f"some modules under {build_dir} do not compile")
    return sum(1 for _ in build_dir.rglob("*.py"))


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    build_dir = Path(arguments[0] if arguments else ".aws-sam/build")
    count = compile_build(build_dir)
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    print(f"bytecode for {count} modules under {build_dir} ({version}, {INVALIDATION.name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
