"""Print pip constraints that pin every dependency to the oldest release we claim to support.

``pyproject.toml`` says ``starlette>=1.0``, ``redis>=5.2.1`` and so on; a user
whose lock file holds exactly those releases must get a working package.
This turns each lower bound of the runtime dependencies and of the user
extras (not ``dev``: the test tools are ours, not our users') into
``name==version``, so CI can install the oldest set and run the suite
against it::

    python .ci/oldest.py > oldest.txt
    pip install -e '.[dev]' -c oldest.txt

A bound written as ``>=5`` becomes ``==5``, which pip matches as 5.0.0.
A dependency without a lower bound is an error here: an unbounded
requirement claims every release ever published.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

_REQUIREMENT = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*(?P<spec>.*)$")
_LOWER = re.compile(r">=\s*(?P<version>[0-9][0-9A-Za-z.]*)")


def oldest(pyproject: Path) -> dict[str, str]:
    """Each runtime and user-extra dependency, mapped to its lowest allowed version."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    own = project["name"]
    requirements = list(project["dependencies"])
    for extra, items in project.get("optional-dependencies", {}).items():
        if extra != "dev":
            requirements.extend(items)
    pins: dict[str, str] = {}
    for requirement in requirements:
        match = _REQUIREMENT.match(requirement.strip())
        if match is None:
            raise SystemExit(f"cannot read the requirement {requirement!r}")
        name = match["name"].lower().replace("_", "-")
        if name == own:
            continue  # an extra that names other extras: "all"
        lower = _LOWER.search(match["spec"])
        if lower is None:
            raise SystemExit(f"{requirement!r} has no lower bound (>=)")
        version = lower["version"]
        if pins.get(name, version) != version:
            raise SystemExit(f"{name} has two lower bounds: {pins[name]} and {version}")
        pins[name] = version
    return pins


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    for name, version in sorted(oldest(root / "pyproject.toml").items()):
        print(f"{name}=={version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
