"""detectron2 tests: skipped, with the install step, when detectron2 (the optional [d2] extra) is absent."""
import pytest

try:
    import pe_dense.d2  # noqa: F401
except ImportError as err:  # pe_dense.d2's message names the install step
    pytest.skip(str(err), allow_module_level=True)


@pytest.fixture(scope="session")
def demo_coco(tmp_path_factory):
    """The bundled demo photos as COCO json + PNGs (pe_dense.data.demo)."""
    from pe_dense.data.demo import build_demo_coco
    return build_demo_coco(str(tmp_path_factory.mktemp("d2_demo_coco")))
