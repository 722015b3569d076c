"""The layer's requirements are generated from the lock: one source of truth for versions."""

from __future__ import annotations

from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ops.layer_requirements import LAYER_REQUIREMENTS, generate

ROOT = Path(__file__).resolve().parents[2]


def _pins(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#")[0].strip()
        if line and not line.startswith("-"):
            requirement = Requirement(line)
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", f"{line} is not an exact pin"
            pins[canonicalize_name(requirement.name)] = specifier.version
    return pins


def test_every_package_the_layer_installs_is_pinned_as_the_lock_pins_it() -> None:
    # Given the layer's requirements (what `sam build` installs) and the development lock
    layer, lock = _pins(LAYER_REQUIREMENTS), _pins(ROOT / "requirements" / "dev.lock")

    # When each layer pin is looked up in the lock
    disagreements = {name: (version, lock.get(name)) for name, version in layer.items()
                     if lock.get(name) != version}  # fmt: skip

    # Then every one is there with the same version, and the list is more than the top level
    assert disagreements == {}
    top_level = _pins(ROOT / "requirements" / "layer.in")
    assert set(top_level) < set(layer)


def test_the_committed_layer_requirements_are_what_make_lock_generates() -> None:
    # Given the installed (locked) packages and requirements/layer.in
    # When the layer's list is generated again
    generated = generate()

    # Then it is the committed file: nobody edited one without the other
    assert LAYER_REQUIREMENTS.read_text() == generated
