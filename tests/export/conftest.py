"""Export fixtures: the fp32 artefact is exported once per session (each export takes a few seconds)."""
import pytest
from _export_tiny import export


@pytest.fixture(scope="session")
def onnx_fp32(tmp_path_factory):
    return export(tmp_path_factory.mktemp("fp32"))
