"""The tiny probe config of these tests, on a photo set written at run time (helper module)."""
import os
import uuid

CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiny_probe_config.py")


def tiny_cfg(photo_root, cache_dir, work_dir, **options):
    """The tiny probe config with ``options`` (``--cfg-options`` style) applied."""
    from pe_dense.engine.runner import build_config

    # A unique experiment name: runners built within the same second would otherwise share mmengine's message
    # hub (named after the config and a timestamp) and log their losses into one history.
    opts = {"data_root": str(photo_root), "feature_cache.dir": str(cache_dir),
            "experiment_name": f"tiny_probe_{uuid.uuid4().hex}"}
    opts.update(options)
    return build_config(CONFIG, opts, work_dir=str(work_dir))
