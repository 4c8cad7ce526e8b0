"""Starlette's own session-middleware tests, run against our middleware.

The yardstick of the drop-in promise: the test file shipped in the sdist of
the installed Starlette release is fetched with pip into a temporary folder
(never committed), its one import of Starlette's ``Session`` and
``SessionMiddleware`` is pointed at ours, and it is run with pytest under
asyncio and under trio. Nothing else in the file is changed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest
import starlette

pytestmark = [pytest.mark.network, pytest.mark.slow]

IMPORT_LINE = "from starlette.middleware.sessions import Session, SessionMiddleware"

CONFTEST = textwrap.dedent(
    """
    import functools

    import pytest
    from starlette.testclient import TestClient


    @pytest.fixture(params=["asyncio", "trio"])
    def anyio_backend(request):
        return request.param


    @pytest.fixture
    def test_client_factory(anyio_backend_name, anyio_backend_options):
        return functools.partial(
            TestClient, backend=anyio_backend_name, backend_options=anyio_backend_options
        )
    """
)


def _fetch_sdist(dest: Path) -> Path:
    version = starlette.__version__
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--disable-pip-version-check",
            "-q",
            "-d",
            str(dest),
            f"starlette=={version}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    archives = list(dest.glob("starlette-*.tar.gz"))
    if result.returncode != 0 or not archives:
        message = f"could not fetch the Starlette {version} sdist: {result.stderr.strip()[-500:]}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return archives[0]


@pytest.fixture(scope="module")
def starlette_suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("starlette_suite")
    archive = _fetch_sdist(root)
    wanted = {"tests/middleware/test_session.py", "tests/types.py"}
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            relative = member.name.split("/", 1)[-1]
            if relative in wanted:
                extracted = tar.extractfile(member)
                assert extracted is not None
                target = root / "suite" / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(extracted.read())
    suite = root / "suite"
    test_file = suite / "tests/middleware/test_session.py"
    source = test_file.read_text()
    assert source.count(IMPORT_LINE) == 1, "Starlette's test file changed its import line"
    test_file.write_text(
        source.replace(IMPORT_LINE, "from asgi_sessions import Session, SessionMiddleware")
    )
    (suite / "tests/__init__.py").write_text("")
    (suite / "tests/middleware/__init__.py").write_text("")
    (suite / "conftest.py").write_text(CONFTEST)
    (suite / "pytest.ini").write_text(
        "[pytest]\n"
        "addopts = -p anyio -p no:asyncio -p no:cacheprovider\n"
        "filterwarnings =\n"
        "    error\n"
        # Starlette's suite uses weak demo secrets ("example"); we warn about those.
        "    ignore:.*secret_key shorter than:UserWarning\n"
        "    ignore:Using `httpx` with `starlette.testclient`:DeprecationWarning\n"
    )
    return suite


def test_starlette_session_suite_passes_unchanged(starlette_suite: Path) -> None:
    env = dict(os.environ)
    project_root = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join([str(starlette_suite), str(project_root)])
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "tests/middleware/test_session.py"],
        cwd=starlette_suite,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    summary = output.strip().splitlines()[-1]
    assert " passed" in summary, output
    assert "skipped" not in summary, output
    assert "failed" not in summary, output
    # Every test ran under both backends: collection lists each id twice.
    collected = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "--collect-only",
            "tests/middleware/test_session.py",
        ],
        cwd=starlette_suite,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    # Starlette 1.0's file (our oldest) has 9 tests per backend; later ones have more.
    assert collected.count("[asyncio") == collected.count("[trio") >= 9, collected
