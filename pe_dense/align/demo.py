"""The alignment demo (tools/demo_align.py): train the tiny config, plot the losses, PCA of the student before/after."""
from __future__ import annotations

import os

import numpy as np
import torch
from mmengine.logging import print_log

from .augment import pe_normalise, render_view, sample_view
from .run import load_config, train_from_config


def _student_map(student, view: torch.Tensor) -> torch.Tensor:
    student.eval()
    with torch.no_grad():
        return student.forward_intermediates(pe_normalise(view[None]), indices=[-1])[0][0]


def run_demo(config: str, out_dir: str, steps: int = 30) -> dict:
    """Returns the mean of each loss over the first and last five steps."""
    import cv2

    from pe_dense.vis.pca import feature_pca_rgb

    os.makedirs(out_dir, exist_ok=True)
    cfg = load_config(config, {"settings.total_steps": steps}, work_dir=out_dir)
    # the student before training: the same build as the run's (seeded)
    from .build import build_parts

    before = build_parts(cfg)
    image = before["images"][0]
    params = sample_view(tuple(image.shape[-2:]), 0, 0, aspect=(1.0, 1.0), flip_p=0.0, brightness=0.0,
                         saturation=0.0)
    view = render_view(image, params, (256, 256))
    map_before = _student_map(before["student"], view)
    trainer = train_from_config(cfg)
    map_after = _student_map(trainer.student, view)

    hist = trainer.history
    summary = {k: (float(np.mean([h[k] for h in hist[:5]])), float(np.mean([h[k] for h in hist[-5:]])))
               for k in ("loss_core", "loss_loc")}
    for k, (a, b) in summary.items():
        print_log(f"demo: {k} first 5 steps {a:.4f} -> last 5 steps {b:.4f}", logger="current")

    def panel(rgb: np.ndarray, title: str) -> np.ndarray:
        pic = cv2.resize((rgb * 255).astype(np.uint8), (256, 256), interpolation=cv2.INTER_NEAREST)
        cv2.putText(pic, title, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 2, cv2.LINE_AA)
        return pic

    photo = (view.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    canvas = np.concatenate([photo, panel(feature_pca_rgb(map_before), "student before"),
                             panel(feature_pca_rgb(map_after), f"after {trainer.step} steps")], axis=1)
    cv2.imwrite(os.path.join(out_dir, "pca_before_after.png"), canvas[..., ::-1])
    _plot_losses(hist, os.path.join(out_dir, "losses.png"))
    return summary


def _plot_losses(hist, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for ax, key in zip(axes, ("loss_core", "loss_loc")):
        ax.plot([h["step"] for h in hist], [h[key] for h in hist])
        ax.set_title(key)
        ax.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
