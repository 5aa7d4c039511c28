"""setup.cfg lists every package (heads/ installs as pe_dense.heads), and the wheel really contains them."""
import configparser
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _packages_on_disk():
    found = set()
    for top, name in (("pe_dense", "pe_dense"), ("heads", "pe_dense.heads")):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top).parts
            found.add(".".join((name, *rel)))
    return found


def _packages_listed():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return {p.strip() for p in cfg["options"]["packages"].split() if p.strip()}


def test_every_package_is_listed():
    assert _packages_on_disk() == _packages_listed()


@pytest.mark.slow
def test_wheel_contains_heads_as_pe_dense_heads(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True)
    names = zipfile.ZipFile(next(tmp_path.glob("pe_dense-*.whl"))).namelist()
    assert "pe_dense/heads/__init__.py" in names and "pe_dense/models/pe.py" in names
    assert not any(n.startswith("heads/") for n in names)
