"""What ships: every package in the wheel and the image, and the default rulesets inside.

There is no Docker engine here, so the Dockerfile is checked by reading it: a new top-level
package that the image does not copy would be silently missing from it.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SETUP = PYPROJECT["tool"]["setuptools"]


def _package_folders() -> set[str]:
    """Every folder of the source tree with an __init__.py, as a dotted package name."""
    found = set()
    for init in ROOT.glob("*/**/__init__.py"):
        rel = init.parent.relative_to(ROOT)
        if rel.parts[0] in ("engine", "api", "cli"):
            found.add(".".join(rel.parts))
    return found


def test_every_package_folder_is_listed_for_installation() -> None:
    listed = set(SETUP["packages"])
    assert _package_folders() <= listed
    mapped = SETUP.get("package-dir", {})
    assert listed - _package_folders() == set(mapped) == {"engine.default_rulesets"}
    assert mapped["engine.default_rulesets"] == "rulesets"


def test_the_dockerfile_copies_every_installed_package_and_the_rulesets() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    copied = set(re.findall(r"^COPY\s+(?:--\S+\s+)*(\S+)\s", text, flags=re.M))
    tops = {p.split(".")[0] for p in SETUP["packages"] if p not in SETUP.get("package-dir", {})}
    missing = {t for t in tops if t not in copied}
    assert not missing, f"the image does not copy {sorted(missing)}"
    # the mapped package's folder is copied into the build stage too, so `pip install .`
    # puts the default rulesets inside the package
    build = text[: text.index("FROM python", text.index("FROM python") + 1)]
    for folder in SETUP.get("package-dir", {}).values():
        assert re.search(rf"^COPY {folder} \./{folder}$", build, flags=re.M), folder
    # the dependency layer reads its list from pyproject.toml
    assert "['project']['dependencies']" in build


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return next(out.glob("kaq-*.whl"))


def test_the_wheel_holds_every_package_and_the_default_rulesets(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in SETUP["packages"]:
        if package == "engine.default_rulesets":
            continue
        assert f"{package.replace('.', '/')}/__init__.py" in names, package
    shipped = {n for n in names if n.startswith("engine/default_rulesets/")}
    assert "engine/default_rulesets/key-account.yaml" in shipped
    assert "engine/default_rulesets/key-account.tests.yaml" in shipped
    data = zipfile.ZipFile(wheel).read("engine/default_rulesets/key-account.yaml")
    assert data == (ROOT / "rulesets" / "key-account.yaml").read_bytes()


def test_the_image_builds_the_studio_page_from_the_lock_file() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    stage = text[text.index("AS studio") : text.index("FROM python")]
    assert "COPY studio/package.json studio/package-lock.json" in stage
    assert "npm ci" in stage and "npm install" not in stage  # the locked versions, only
    served = re.search(r"KAQ_STUDIO_ASSETS=(\S+)", text)
    assert served is not None
    assert f"COPY --from=studio /studio/dist {served[1]}" in text
    # no third-party code in the repository: the bundle and node_modules are built, ignored
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").split()
    assert {"studio/node_modules/", "studio/dist/"} <= set(ignored)
    tracked = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "studio"], capture_output=True, text=True
    ).stdout.split()
    assert tracked and all(
        not p.startswith(("studio/node_modules", "studio/dist")) for p in tracked
    )
