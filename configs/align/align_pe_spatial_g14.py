# PE-Spatial G: SAM 2-guided spatial alignment of PE-Core G (arXiv 2504.13181 appendix B.3; PE_FACTS section 5).
# No official training code exists; every value below is the paper's, every open choice is a named option.
#
#   python tools/align.py configs/align/align_pe_spatial_g14.py --cfg-options student.checkpoint=PE-Core-G14-448.pt \
#       teacher.checkpoint=PE-Core-G14-448.pt sam.checkpoint=sam2.1_hiera_large.pt data.root=/data/images
#   torchrun --nproc-per-node 8 tools/align.py CONFIG --launcher pytorch ...      (DDP)
#
# Schedule arithmetic:
#   published: batch 12,288 x 24,000 steps = 294,912,000 samples (~300M from the PE-Core data), 448 px
#   here: 8 devices x batch 12 x accum_steps 128 = 12,288 per optimizer step; 24,000 steps
#   (another device count N: keep N x settings.batch_size x settings.accum_steps = 12,288)
#   token grid: 448 / 14 = 32 x 32 = 1,024 tokens; SAM: 32 x 32 = 1,024 point prompts at 1,024 px
#   SAM target cache (optional, tools/cache_sam_targets.py): 1,024 channels x 1,024 tokens x 2 bytes = 2 MiB per
#   sample in fp16; int8 (1 byte + a float32 scale per token): 1,024 x 1,024 + 4 x 1,024 bytes = 1.004 MiB. Either
#   way 300M samples do not fit any disk: cache only the views of a shorter run or a first epoch.
work_dir = 'work_dirs/align_pe_spatial_g14'
checkpoint_interval = 500
# how ranks share the student: 'ddp' (replicas) | 'fsdp' (FSDP2, sharded per block: the G student's fp32 weights,
# gradients and LAMB moments are 1.9B x 16 bytes = ~30 GB per replica under DDP, ~30 / N GB per rank under FSDP);
# checkpoints hold the full state dict either way
strategy = 'ddp'

student = dict(
    core='PE-Core-G14-448',  # initialised from Core G; Core heads (ln_post, attn pool, proj) dropped
    checkpoint=None,
    ls_init=0.1,  # LayerScale, the only new parameters
    drop_path_rate=0.4,
    grad_checkpointing=True)
teacher = dict(model_name='PE-Core-G14-448', checkpoint=None)  # frozen; its layer is settings.teacher_layer
sam = dict(
    config='configs/sam2.1/sam2.1_hiera_l.yaml',  # SAM 2.1-L (sam2 package config); image_size 1024
    checkpoint=None,  # sam2.1_hiera_large.pt (local file); None = random weights (tests only)
    overrides=[],
    points_per_side=32,
    chunk_size=128,  # prompts per decoder call (memory ~25 MiB per prompt in fp32)
    mask_output='single',  # open choice: 'single' (with SAM's stability fallback) | 'best_iou'
    logit_transform='clamp',  # open choice: 'clamp' (+-32, as the predictor) | 'raw' | 'sigmoid'
    resize='area',  # open choice: low-res logits -> token grid by 'area' mean | 'bilinear'
    apply_postprocessing=True)
# dir set: read targets from the cache. dtype: 'float16' | 'int8' (per-token symmetric scale; L_loc within 2e-3
# relative of online in tests/align/test_target_cache.py) | 'float32'
sam_cache = dict(dir=None, dtype='float16', shard_size=256)
data = dict(type='folder', root=None)

settings = dict(
    mode='align',
    image_size=448,
    batch_size=12,
    accum_steps=128,
    lr=5e-4,
    betas=(0.9, 0.95),
    weight_decay=0.05,
    schedule='constant',  # no warm-up (published); the decay after it is not published
    total_steps=24_000,
    teacher_layer=40,  # the paper's "layer 41"
    mask_ratio=0.75,
    mask_block=(2, 2),
    mask_method='zero_pixels',  # open choice: 'zero_pixels' | 'noise' (a mask token would add parameters)
    loc_sees_masked=True,  # open choice: L_loc on the masked student; False: on an extra unmasked forward
    temperature=20.0,
    include_diagonal=True,  # open choice: the paper's sum over all (i, j)
    core_form='neg_cos',  # #43: negative cosine ('one_minus_cos' has the same gradient)
    w_core=1.0,
    w_loc=1.0,
    amp=True,  # bf16 autocast for student and teachers; similarities and exp stay fp32
    aspect=(0.75, 1.33),
    brightness=0.32,
    saturation=0.32,
    flip_p=0.5,
    log_interval=10)
