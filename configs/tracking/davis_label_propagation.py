# Zero-shot DAVIS-2017 label propagation with frozen PE-Spatial features (issue 4, PE_FACTS.md section 6).
#
# Every protocol value lives here; tools/track.py flags and --cfg-options override them.
# With these defaults the predictions follow the reference protocol (DINO's eval_video_segmentation.py) that the
# published PE numbers use (Spatial T/S/B/L/G: 55.0 / 57.5 / 58.9 / 60.6 / 61.5 J&F on DAVIS-2017 val).
#
# Default feature layer: the LAST block (layer=-1), cls token dropped. PE-Spatial's last layer is its intended
#   output (it is what the spatial alignment trains), and it is what the published DAVIS numbers use. For PE-Core
#   models a middle layer is better (Core G's best spatial layer is about 40 of 50); set model.layer.
# Default input resolution: short side 480, long side rounded DOWN to a multiple of 64, frame stretched (not
#   cropped): DAVIS 854x480 frames become 832x480, i.e. a 52x30 token grid with patch 16. This is the reference
#   protocol's resize; the numbers above were measured with it. It is not the models' native 512x512 (32x32
#   tokens); PE's RoPE extrapolates to the other grid. For patch-14 models (L/G) 480 is not a multiple of 14, so
#   sides are further rounded down to a patch multiple (476x826 -> 34x59 tokens): our choice, the reference
#   never needed one.

model = dict(
    name="PE-Spatial-B16-512",  # any PE config name; T16/S16/B16 (patch 16) or L14/G14 (patch 14)
    checkpoint=None,  # path to an official PE-Spatial-*.pt; None = random weights (tests and timing only)
    layer=-1,  # block whose tokens are propagated (Python-style index, -1 = last)
    norm=False,  # apply ln_post (Spatial models have none)
    overrides=dict(),  # PEVisionTransformer.from_config overrides, e.g. dict(layers=2) for fast tests
)

data = dict(
    short_side=480,  # frame short side fed to the network; None keeps the frame size
    long_side_multiple=64,  # the long side is rounded down to a multiple of this
    mean=(0.5, 0.5, 0.5),  # PE normalisation
    std=(0.5, 0.5, 0.5),
    void_label=255,  # DAVIS "void": treated as background in the first mask and in the metric
)

features = dict(
    batch_size=4,  # frames per forward pass; features are computed once per frame
)

propagation = dict(
    n_last_frames=7,  # context = first frame + the soft label maps of the last 7 predicted frames
    radius=12,  # square neighbourhood window, in tokens; 0 disables it
    topk=5,  # affinities kept per query over all context tokens jointly (ties at the k-th value kept)
    temperature=0.1,  # affinity = exp(cos / temperature)
    chunk_elements=2**25,  # affinity entries computed at once: bounds memory, never changes results
)

metric = dict(
    bound_th=0.008,  # boundary tolerance = ceil(0.008 * image diagonal) pixels (8 px at 854x480)
    void_label=255,  # void counts as background
    skip_first_last=True,  # the first and last frames are not scored
)

davis = dict(split="val", year="2017", resolution="480p")

output = dict(
    overlay="mp4",  # "mp4" (OpenCV), "png" (one overlay image per frame) or "none"
    overlay_alpha=0.5,  # label colour opacity in the overlay
    overlay_fps=None,  # None: the video's own rate (24 for DAVIS folders)
)

device = "cpu"
