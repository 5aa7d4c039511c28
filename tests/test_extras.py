"""Install what the task needs: the core works without OpenMMLab, and a module whose extra is missing says which."""
import configparser
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))

# A sys.meta_path finder that makes packages unimportable, as if they were not installed.
BLOCKER = textwrap.dedent("""
    import sys

    class Blocker:
        def __init__(self, names):
            self.names = set(names)

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.names:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
            return None

    sys.meta_path.insert(0, Blocker(BLOCKED))
""")

CORE_SCRIPT = textwrap.dedent("""
    import sys

    import numpy as np
    import torch

    import pe_dense.convert.pe  # noqa: F401 - checkpoint conversion
    from pe_dense.data.images import preprocess
    from pe_dense.models.configs import get_config
    from pe_dense.models.pe import PEVisionTransformer
    from pe_dense.tracking import propagate
    from pe_dense.vis import feature_pca_rgb

    import skimage.data
    torch.manual_seed(0)
    model = PEVisionTransformer(get_config("PE-Spatial-T16-512").replace(layers=2)).eval()
    x = preprocess(skimage.data.astronaut(), size=(128, 128))  # a real photo
    with torch.no_grad():
        feats = model.forward_intermediates(x, indices=[1], output_fmt="NCHW")[0][0]  # (192, 8, 8)
    print("FEATS", float(feats.double().sum()), float(feats.double().abs().sum()))
    rgb = feature_pca_rgb(feats)
    assert rgb.shape == (8, 8, 3) and rgb.min() >= 0.0 and rgb.max() <= 1.0 and rgb.std() > 0.05
    # Three regions of 12+ tokens, each token's feature the one-hot of its region: every top-5 neighbour of a token
    # has its label, so the protocol must copy frame 0's token labels to every frame (compared at token centres:
    # DINO's decoding upsamples token probabilities bilinearly, which moves region edges by up to half a token).
    first = np.zeros((128, 128), np.int64)
    first[32:96, 16:64] = 1
    first[64:128, 80:128] = 2
    onehot = torch.nn.functional.one_hot(torch.from_numpy(first[8::16, 8::16]), 3).permute(2, 0, 1).float()
    masks = propagate(torch.stack([onehot] * 3), first)
    assert len(masks) == 3 and torch.equal(masks[0].cpu(), torch.from_numpy(first))
    assert all((m.cpu().numpy()[8::16, 8::16] == first[8::16, 8::16]).all() for m in masks[1:]), "propagation"
    loaded = sorted({m.split(".")[0] for m in sys.modules} & {blocked_set})
    assert not loaded, loaded
    print("CORE OK")
""")


def _run(blocked, body: str) -> subprocess.CompletedProcess:
    code = BLOCKER.replace("BLOCKED", repr(sorted(blocked))) + body.replace("{blocked_set}", repr(set(blocked)))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=300)


OPENMMLAB = ("mmcv", "mmdet", "mmseg", "mmengine")


def test_core_works_without_openmmlab():
    """Backbone forward on a real photo (equal to this full install's), feature PCA and label propagation with
    mmcv/mmdet/mmseg/mmengine unimportable; none of them gets imported."""
    import skimage.data
    import torch

    from pe_dense.data.images import preprocess
    from pe_dense.models.configs import get_config
    from pe_dense.models.pe import PEVisionTransformer

    res = _run(OPENMMLAB, CORE_SCRIPT)
    assert res.returncode == 0 and "CORE OK" in res.stdout, res.stderr[-3000:]
    torch.manual_seed(0)
    model = PEVisionTransformer(get_config("PE-Spatial-T16-512").replace(layers=2)).eval()
    with torch.no_grad():
        feats = model.forward_intermediates(preprocess(skimage.data.astronaut(), size=(128, 128)), indices=[1],
                                            output_fmt="NCHW")[0][0]
    got = [float(v) for v in res.stdout.split("FEATS ", 1)[1].split()[:2]]
    assert got == pytest.approx([float(feats.double().sum()), float(feats.double().abs().sum())], rel=1e-5)


OPENMMLAB_MODULES = [("pe_dense.mm", "det"), ("pe_dense.heads.deta", "det"), ("pe_dense.heads.mask_rcnn", "det"),
                     ("pe_dense.heads.seg", "seg"), ("pe_dense.heads.depth", "seg")]


def test_openmmlab_modules_name_their_extra():
    body = textwrap.dedent("""
        import importlib
        from pe_dense.extras import MissingExtraError
        for name in MODULES:
            try:
                importlib.import_module(name)
            except MissingExtraError as err:
                print(f"{name}: {err}")
            else:
                raise SystemExit(f"{name} imported without OpenMMLab")
    """).replace("MODULES", repr([m for m, _ in OPENMMLAB_MODULES]))
    res = _run(OPENMMLAB, body)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = dict(line.split(": ", 1) for line in res.stdout.splitlines() if ": " in line)
    for module, extra in OPENMMLAB_MODULES:
        message = lines[module]
        assert f"pip install 'pe_dense[{extra}]'" in message and "is not installed" in message, message
        assert message.count("pip install") == 1  # one message, not a chain of hints


def test_lazy_import_sites_name_their_extra():
    """Video decoding, SAM 2 targets, ONNX export and the deploy runner, each with its package blocked."""
    body = textwrap.dedent("""
        from pe_dense.extras import MissingExtraError

        def message(fn):
            try:
                fn()
            except MissingExtraError as err:
                return str(err)
            raise SystemExit(f"{fn} did not raise")

        from pe_dense.tracking.video import _torchcodec_decoder_class
        from pe_dense.align.sam_targets import build_sam2_teacher
        from pe_dense.export.graph_checks import _complex_types
        from pe_dense.deploy import DeployedModel
        print("VIDEO:", message(_torchcodec_decoder_class))
        print("ALIGN:", message(build_sam2_teacher))
        print("EXPORT:", message(_complex_types))
        print("DEPLOY:", message(lambda: DeployedModel("missing.onnx")))
    """)
    res = _run(("torchcodec", "sam2", "onnx", "onnxruntime"), body)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = dict(line.split(": ", 1) for line in res.stdout.splitlines() if ": " in line)
    for key, extra in (("VIDEO", "video"), ("ALIGN", "align"), ("EXPORT", "export"), ("DEPLOY", "deploy")):
        assert f"pip install 'pe_dense[{extra}]'" in lines[key], (key, lines[key])


def test_require_passes_other_import_errors_through():
    """Only a missing package of the named extra becomes the install hint; anything else stays as it was."""
    from pe_dense.extras import MissingExtraError, require, requires

    with pytest.raises(MissingExtraError, match=r"pe_dense\[video\]"):
        with requires("video", "test"):
            raise ModuleNotFoundError("No module named 'torchcodec'", name="torchcodec")
    with pytest.raises(ModuleNotFoundError) as err:
        require("det", "surely_not_a_package_of_pe_dense")
    assert not isinstance(err.value, MissingExtraError)
    with pytest.raises(ValueError, match="unknown extra"):
        require("nope", "os")
    assert require("det", "os").sep == os.sep


def _extras_from_setup_cfg():
    parser = configparser.ConfigParser()
    parser.read(os.path.join(ROOT, "setup.cfg"))
    out = {}
    for extra, value in parser["options.extras_require"].items():
        names = [line.strip() for line in value.splitlines() if line.strip()]
        out[extra] = {n.split(";")[0].split("<")[0].split(">")[0].split("=")[0].strip().lower() for n in names}
    core = {line.strip().split(">")[0].lower() for line in parser["options"]["install_requires"].splitlines()
            if line.strip()}
    return out, core


# PyPI name -> import name, where they differ
IMPORT_NAME = {"mmsegmentation": "mmseg", "opencv-python": "cv2", "scikit-image": "skimage", "pillow": "PIL"}


def test_setup_cfg_extras_agree_with_the_import_map():
    """Every package an extra's message can name is in that extra in setup.cfg, [all] is the union of all but d2,
    and the core has no OpenMMLab package."""
    from pe_dense.extras import EXTRAS

    extras, core = _extras_from_setup_cfg()
    assert set(extras) == set(EXTRAS) | {"all"}
    for extra, modules in EXTRAS.items():
        provided = {IMPORT_NAME.get(n, n) for n in extras[extra]}
        assert set(modules) <= provided, (extra, set(modules) - provided)
    assert extras["all"] == set().union(*(v for k, v in extras.items() if k not in ("all", "d2")))
    assert not core & {"mmengine", "mmcv", "mmdet", "mmsegmentation"}
    assert {"torch", "safetensors", "numpy"} <= core


def test_setup_env_installs_the_d2_extra_of_setup_cfg():
    """tools/setup_env.sh's PE_DENSE_WHEELS step installs exactly setup.cfg's d2 extra (detectron2 from the folder)."""
    import re

    script = open(os.path.join(ROOT, "tools", "setup_env.sh")).read()
    deps = re.search(r"^D2_DEPS=\((.*)\)$", script, re.M).group(1)
    listed = {re.split(r"[<>=]", d.strip('"'))[0].lower() for d in deps.split()}
    extras, _ = _extras_from_setup_cfg()
    assert listed | {"detectron2"} == extras["d2"]
    assert 'PE_DENSE_WHEELS' in script and "--no-deps --find-links" in script
