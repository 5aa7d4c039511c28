# CPU demonstration of the G recipe's mechanics on real photos (scikit-image) with tiny random models: a 4-block
# PE-Core-T-shaped tower as Core teacher (layer 2 of 4, as 40 of 50) and as the student's initialisation (as the
# recipe: student and teacher start from the same Core weights), and a ~3.5M-parameter random SAM 2 at 128 px.
# Used by tools/demo_align.py and the slow end-to-end test. 6 photos, batch 3 x accum 2 = 6 per step, 30 steps.
_base_ = './align_pe_spatial_g14.py'
work_dir = 'work_dirs/demo_align_tiny'
checkpoint_interval = 20

_tiny = dict(layers=4)
student = dict(core='PE-Core-T16-384', checkpoint=None, config_overrides=_tiny, grad_checkpointing=False,
               init_seed=0, init_from_teacher=True)
teacher = dict(model_name='PE-Core-T16-384', checkpoint=None, config_overrides=_tiny)
sam = dict(config='configs/sam2.1/sam2.1_hiera_t.yaml', checkpoint=None, init_seed=0, points_per_side=8,
           chunk_size=64, tiny_image_size=128)
data = dict(type='skimage')
settings = dict(image_size=128, batch_size=3, accum_steps=2, total_steps=30, teacher_layer=2, amp=False,
                lr=3e-3,  # demo: 6x the recipe's lr so 30 steps show the trend
                log_interval=5)
