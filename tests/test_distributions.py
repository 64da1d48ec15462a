"""What pip shows of each distribution: built as wheels, every one has project URLs and a
README that renders as PyPI renders it, and declares what it imports (optional parts as
extras)."""

from __future__ import annotations

import email
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import readme_renderer.markdown

REPO = Path(__file__).resolve().parents[1]
DISTRIBUTIONS = {"epics-meta-devices": REPO, **{p.name: p for p in sorted((REPO / "plugins").iterdir())
                                                if (p / "pyproject.toml").exists()}}


@pytest.fixture(scope="module")
def metadata(tmp_path_factory: pytest.TempPathFactory) -> dict[str, email.message.Message]:
    """Each distribution's wheel METADATA, as PyPI and pip read it."""
    wheels = tmp_path_factory.mktemp("wheels")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                            "--no-build-isolation", "--wheel-dir", str(wheels), *map(str, DISTRIBUTIONS.values())],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    found = {}
    for wheel in wheels.glob("*.whl"):
        with zipfile.ZipFile(wheel) as archive:
            [name] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
            message = email.message_from_bytes(archive.read(name))
        found[message["Name"]] = message
    assert set(found) == set(DISTRIBUTIONS)
    return found


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_project_urls_and_a_readme_that_renders(metadata, name):
    meta = metadata[name]
    urls = dict(url.split(", ", 1) for url in meta.get_all("Project-URL", []))
    assert {"Homepage", "Documentation", "Source", "Issues"} <= set(urls), urls
    assert all(url.startswith("https://") for url in urls.values())
    assert meta["Description-Content-Type"] == "text/markdown"
    readme = meta.get_payload()
    assert readme.strip().startswith("# ")
    html = readme_renderer.markdown.render(readme)
    assert html and "<h1" in html


def test_optional_parts_are_extras_and_imports_are_declared(metadata):
    requires = {name: [r.replace("'", '"') for r in meta.get_all("Requires-Dist", [])]
                for name, meta in metadata.items()}
    dms = requires["emd-dms"]
    assert any(r.startswith("boto3") and 'extra == "s3"' in r for r in dms), dms
    assert not any(r.startswith("boto3") and "extra" not in r for r in dms), dms
    collector = requires["emd-collector"]
    assert any(r.startswith("rich") and "extra" not in r for r in collector), collector
    for extra, package in (("pandas", "pandas"), ("xarray", "xarray"), ("plot", "matplotlib")):
        assert any(r.startswith(package) and f'extra == "{extra}"' in r for r in collector), (extra, collector)
    assert any(r.startswith("pvxslibs") and 'extra == "demo"' in r for r in requires["epics-meta-devices"])
