"""Label propagation: exactness against a literal re-statement of the protocol, and behaviour on oracle videos."""
import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from tracking_synthetic import oracle_features, token_boxes_video, token_labels

from pe_dense.tracking import LabelPropagator, propagate
from pe_dense.tracking.propagate import first_frame_labels, upsample_and_decode


# ------------------------------------------------------------------------------------------------ reference
def _pil_resize_nearest(labels: np.ndarray, size_hw) -> np.ndarray:
    return np.asarray(Image.fromarray(labels.astype(np.uint8)).resize((size_hw[1], size_hw[0]), Image.NEAREST))


def _bilinear_upsample(x: np.ndarray, factor: int) -> np.ndarray:
    """(L, h, w) -> (L, h*f, w*f), half-pixel centres (align_corners=False), edges clamped."""
    def axis_weights(n):
        src = np.clip((np.arange(n * factor) + 0.5) / factor - 0.5, 0, None)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n - 1)
        return lo, hi, src - lo
    L, h, w = x.shape
    r0, r1, rw = axis_weights(h)
    c0, c1, cw = axis_weights(w)
    rows = x[:, r0] * (1 - rw)[None, :, None] + x[:, r1] * rw[None, :, None]
    return rows[:, :, c0] * (1 - cw)[None, None] + rows[:, :, c1] * cw[None, None]


def reference_protocol(feats, first_mask, patch, n_last=7, radius=12, topk=5, temperature=0.1):
    """The protocol of PE_FACTS section 6 written out literally, one query token at a time, in float64.

    Returns the label maps and, per frame, the top-two margin of the decision (to skip exact-tie pixels).
    """
    T, C, h, w = feats.shape
    H, W = first_mask.shape
    unit = [f.reshape(C, -1).T / np.linalg.norm(f.reshape(C, -1).T, axis=1, keepdims=True) for f in feats]
    small = _pil_resize_nearest(first_mask, (h, w)).astype(int)
    first = np.eye(small.max() + 1)[small.reshape(-1)].T  # (L, N)
    queue, outs, margins = [], [first_mask], [None]
    for t in range(1, T):
        ctx = [(unit[0], first)] + queue
        soft = np.zeros((first.shape[0], h * w))
        for q in range(h * w):
            qi, qj = divmod(q, w)
            cand = []
            for keys, labels in ctx:
                for k in range(h * w):
                    ki, kj = divmod(k, w)
                    inside = radius <= 0 or (abs(ki - qi) <= radius and abs(kj - qj) <= radius)
                    a = np.exp(unit[t][q] @ keys[k] / temperature) if inside else 0.0
                    cand.append((a, labels[:, k]))
            kth = sorted((a for a, _ in cand), reverse=True)[min(topk, len(cand)) - 1]
            kept = [(a, lab) for a, lab in cand if a >= kth]
            total = sum(a for a, _ in kept)
            soft[:, q] = sum(a / total * lab for a, lab in kept)
        queue = (queue + [(unit[t], soft)])[-n_last:]
        up = _bilinear_upsample(soft.reshape(-1, h, w), patch)
        for c in range(up.shape[0]):
            if up[c].max() > 0:
                up[c] = (up[c] - up[c].min()) / (up[c] - up[c].min()).max()
        top2 = np.sort(up, axis=0)[-2:] if up.shape[0] > 1 else np.stack([np.zeros_like(up[0]), up[0]])
        outs.append(_pil_resize_nearest(up.argmax(0), (H, W)))
        margins.append(_pil_resize_nearest(((top2[1] - top2[0]) < 1e-4).astype(np.uint8), (H, W)))
    return outs, margins


@pytest.mark.parametrize("n_last,radius,topk,frame_size", [
    (7, 12, 5, (24, 28)),  # protocol values; the window covers this small grid
    (3, 2, 5, (30, 33)),  # window active, queue eviction, frame size not h*patch (nearest resize back)
    (2, 1, 3, (26, 29)),
])
def test_matches_literal_protocol_on_random_features(n_last, radius, topk, frame_size):
    torch.manual_seed(0)
    T, C, h, w, patch = 10, 16, 6, 7, 4
    feats = torch.randn(T, C, h, w)
    rng = np.random.default_rng(1)
    first_mask = np.zeros(frame_size, dtype=np.int64)
    for label in (1, 2, 3):
        r, c = rng.integers(0, frame_size[0] - 10), rng.integers(0, frame_size[1] - 10)
        first_mask[r:r + 10, c:c + 9] = label
    ours = propagate(feats, first_mask, n_last_frames=n_last, radius=radius, topk=topk, patch_size=patch)
    ref, near_tie = reference_protocol(feats.double().numpy(), first_mask, patch, n_last, radius, topk)
    assert len(ours) == T
    assert np.array_equal(ours[0].numpy(), first_mask)
    for t in range(1, T):
        assert ours[t].shape == frame_size
        differ = ours[t].numpy() != ref[t]
        assert not (differ & (near_tie[t] == 0)).any(), f"frame {t}: {differ.sum()} pixels differ"
    assert sum(len(np.unique(m)) for m in ref[1:]) > T  # not a degenerate all-background case


def test_first_mask_shrinks_like_pil_nearest():
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 4, size=(480, 854))
    small = first_frame_labels(torch.from_numpy(mask), (30, 52)).argmax(0).numpy()
    assert np.array_equal(small, _pil_resize_nearest(mask, (30, 52)))


def test_decode_resizes_back_like_pil_nearest():
    torch.manual_seed(0)
    soft = torch.rand(3, 5, 7)
    out = upsample_and_decode(soft, 16, (83, 117)).numpy()
    full = upsample_and_decode(soft, 16, (80, 112)).numpy()
    assert np.array_equal(out, _pil_resize_nearest(full, (83, 117)))
    up = _bilinear_upsample(soft.double().numpy(), 16)
    up = (up - up.min((1, 2), keepdims=True)) / (up.max((1, 2), keepdims=True) - up.min((1, 2), keepdims=True))
    assert (full == up.argmax(0)).mean() > 0.999  # same bilinear/min-max/argmax decoding


# ------------------------------------------------------------------------------------------------ oracle videos
def _expected_decoding(mask, patch):
    """What the protocol outputs when it gets every token right (corners of objects round off)."""
    tokens = torch.from_numpy(token_labels(mask, patch))
    onehot = F.one_hot(tokens, int(tokens.max()) + 1).permute(2, 0, 1).float()
    return upsample_and_decode(onehot, patch, mask.shape).numpy()


def test_oracle_features_recover_moving_objects(oracle_video):
    masks, feats, patch = oracle_video
    preds = propagate(feats, masks[0], patch_size=patch)
    for t in range(1, len(masks)):
        assert np.array_equal(preds[t].numpy(), _expected_decoding(masks[t], patch)), f"frame {t}"
        inter = ((preds[t].numpy() > 0) & (masks[t] > 0)).sum()
        assert inter / ((preds[t].numpy() > 0) | (masks[t] > 0)).sum() > 0.95


def test_ten_objects():
    T, grid, patch = 8, (16, 30), 4
    boxes = {k: [((k - 1) // 5 * 7 + 1 + (t % 2), (k - 1) % 5 * 6 + 1 + t // 2, 3, 2) for t in range(T)]
             for k in range(1, 11)}
    masks = token_boxes_video(T, grid, patch, boxes)
    assert len(np.unique(masks[0])) == 11
    preds = propagate(oracle_features(masks, patch, 11), masks[0], patch_size=patch)
    for t in range(1, T):
        assert np.array_equal(preds[t].numpy(), _expected_decoding(masks[t], patch)), f"frame {t}"


def _one_object_video(positions, grid=(10, 24), patch=4, size=(2, 2)):
    boxes = {1: [None if p is None else (p[0], p[1], *size) for p in positions]}
    masks = token_boxes_video(len(positions), grid, patch, boxes)
    return masks, oracle_features(masks, patch, 2), patch


def _found_all(pred, mask, patch):
    """Object 1 predicted exactly where a perfect token-level prediction decodes to."""
    return np.array_equal(pred.numpy() == 1, _expected_decoding(mask, patch) == 1)


@pytest.mark.parametrize("radius,found", [(12, "all"), (0, "all"), (8, "all"), (7, "part"), (6, "none"),
                                          (3, "none")])
def test_radius_limits_the_search(radius, found):
    """A 2x2-token object jumps 8 tokens right: its new left column is 7 tokens from its old right column and
    its new right column 8 tokens away, so radius 8 finds all of it, 7 half, 6 nothing."""
    masks, feats, patch = _one_object_video([(4, 2), (4, 10)])
    pred = propagate(feats, masks[0], radius=radius, patch_size=patch)[1]
    assert _found_all(pred, masks[1], patch) == (found == "all")
    assert (pred.numpy() == 1).any() == (found != "none")


@pytest.mark.parametrize("offset,found", [((3, 3), True), ((4, 0), False), ((0, 4), False)])
def test_window_is_square_not_round(offset, found):
    """A one-token object displaced by (3, 3) is at Chebyshev distance 3 (inside radius 3) although its
    Euclidean distance is 4.2; (4, 0) is outside."""
    masks, feats, patch = _one_object_video([(2, 5), (2 + offset[0], 5 + offset[1])], size=(1, 1))
    pred = propagate(feats, masks[0], radius=3, patch_size=patch)[1].numpy()
    assert (pred == 1).any() == found


def test_frames_without_object_predict_background():
    masks, feats, patch = _one_object_video([(4, 2), (4, 3), None, None, None, (4, 4)])
    preds = propagate(feats, masks[0], patch_size=patch)
    for t in (2, 3, 4):
        assert (preds[t].numpy() == 0).all(), f"frame {t} should be empty"
    assert _found_all(preds[5], masks[5], patch)  # seen again next to where it was


def test_first_frame_without_object():
    masks, feats, patch = _one_object_video([None, (4, 3), (4, 4)])
    preds = propagate(feats, masks[0], patch_size=patch)
    assert all((p.numpy() == 0).all() for p in preds)


def test_object_leaving_and_reentering_is_found_through_the_first_frame():
    """The object leaves through the right edge and is away 10 frames (longer than the 7-frame queue); it comes
    back near its frame-0 position, which frame 0 (always in the context) still covers."""
    away = [None] * 10
    positions = [(4, 18), (4, 20), (4, 22), (4, 24)] + away + [(4, 17), (4, 16)]
    masks, feats, patch = _one_object_video(positions)
    assert (masks[3] == 0).all()  # fully outside the frame
    preds = propagate(feats, masks[0], radius=3, patch_size=patch)
    for t in range(3, 14):
        assert (preds[t].numpy() == 0).all()
    for t in (14, 15):
        assert _found_all(preds[t], masks[t], patch), f"frame {t}: not re-found"


@pytest.mark.parametrize("gap,n_last,found", [(6, 7, True), (7, 7, False), (7, 8, True), (2, 1, False)])
def test_context_queue_length(gap, n_last, found):
    """The object drifts far from its frame-0 place, vanishes for `gap` frames and reappears where it was last
    seen: only a queued frame can recover it, so it is found iff the last sighting is still in the queue."""
    drift = [(4, 1 + 2 * t) for t in range(8)]  # ends at column 15, far outside radius 3 of column 1
    positions = drift + [None] * gap + [drift[-1]]
    masks, feats, patch = _one_object_video(positions)
    preds = propagate(feats, masks[0], n_last_frames=n_last, radius=3, patch_size=patch)
    assert _found_all(preds[7], masks[7], patch)  # tracked while drifting
    assert _found_all(preds[-1], masks[-1], patch) == found
    assert (preds[-1].numpy() == 1).any() == found


def _two_dim_features(vectors):
    return torch.tensor(vectors, dtype=torch.float32).T.reshape(2, 1, len(vectors))


def test_topk_counts_jointly_and_decides():
    """Query matches one object key exactly (cos 1) and four background keys at cos 0.9: with k=1 the object
    wins; with k=5 the four background weights (4 e^-1 ~ 1.47 relative) outvote it."""
    bg_close = (0.9, float(np.sqrt(1 - 0.81)))
    keys = [(1.0, 0.0)] + [bg_close] * 4 + [(0.0, 1.0)] * 3
    first = _two_dim_features(keys)
    query = _two_dim_features([(1.0, 0.0)] * 8)
    first_mask = np.array([[1, 0, 0, 0, 0, 0, 0, 0]])
    for k, expect_object in ((1, True), (5, False)):
        prop = LabelPropagator(first, first_mask, topk=k, radius=0, patch_size=1)
        soft = prop.step(query)[1]
        assert (soft[1, 0, 0] > 0.5) == expect_object
        expected = 1.0 if k == 1 else 1 / (1 + 4 * np.exp(-1.0))
        assert soft[1, 0, 0].item() == pytest.approx(expected, rel=1e-5)


def test_topk_keeps_ties():
    """Eight keys tie for the best affinity: all eight are kept with k=5, so 3 object keys give 3/8."""
    keys = [(1.0, 0.0)] * 8 + [(0.0, 1.0)] * 4
    first_mask = np.array([[1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]])
    prop = LabelPropagator(_two_dim_features(keys), first_mask, topk=5, radius=0, patch_size=1)
    soft = prop.step(_two_dim_features([(1.0, 0.0)] * 12))[1]
    assert soft[1, 0, 0].item() == pytest.approx(3 / 8, rel=1e-6)


def test_temperature_sharpens():
    keys = [(1.0, 0.0), (0.8, 0.6), (0.8, 0.6), (0.8, 0.6)]
    first_mask = np.array([[1, 0, 0, 0]])
    sharp = LabelPropagator(_two_dim_features(keys), first_mask, radius=0, patch_size=1, temperature=0.02)
    flat = LabelPropagator(_two_dim_features(keys), first_mask, radius=0, patch_size=1, temperature=100.0)
    query = _two_dim_features([(1.0, 0.0)] * 4)
    assert sharp.step(query)[1][1, 0, 0] > 0.99
    assert flat.step(query)[1][1, 0, 0] == pytest.approx(0.25, abs=0.01)


def test_nearest_shrink_drops_tiny_objects(caplog):
    """A 3x3-pixel object that no sampled pixel of the shrink hits is never predicted, even though the oracle
    features show it plainly (grown to a whole token) in later frames."""
    patch, grid = 8, (6, 8)
    masks = token_boxes_video(4, grid, patch, {1: [(3, 4, 2, 2)] * 4, 2: [None] + [(1, 1, 1, 1)] * 3})
    masks[0][8:11, 8:11] = 2  # pixels 8..10: the shrink samples rows/cols 4, 12, 20, ... and misses it
    feats = oracle_features(masks, patch, 3)
    with caplog.at_level(logging.WARNING, logger="pe_dense.tracking.propagate"):
        preds = propagate(feats, masks[0], patch_size=patch)
    assert "vanish" in caplog.text
    assert (preds[0].numpy() == 2).sum() == 9  # frame 0 is returned as given
    assert all(not (p.numpy() == 2).any() for p in preds[1:])
    for p, m in zip(preds[1:], masks[1:], strict=True):
        assert np.array_equal(p.numpy() == 1, _expected_decoding(m, patch) == 1)  # the big object is tracked
    # the same object two pixels further on covers a sampled pixel (row/col 12) and is then tracked
    masks[0][8:11, 8:11] = 0
    masks[0][10:13, 10:13] = 2
    preds = propagate(oracle_features(masks, patch, 3), masks[0], patch_size=patch)
    assert (preds[1].numpy() == 2).any()


def test_inputs_are_validated():
    feats = torch.randn(3, 4, 2, 2)
    with pytest.raises(ValueError, match="integer label map"):
        propagate(feats, np.zeros((8, 8), dtype=np.float32))
    with pytest.raises(ValueError, match="token grid"):
        propagate([feats[0], torch.randn(4, 3, 3)], np.zeros((8, 8), dtype=np.int64))
    with pytest.raises(ValueError, match="patch size"):
        propagate(feats, np.zeros((8, 13), dtype=np.int64))
    assert propagate(feats, np.zeros((8, 8), dtype=np.int64))[2].shape == (8, 8)  # patch 4 inferred
