# PE-Spatial-S16 distilled from PE-Spatial G (see _distill_base.py for the losses and schedule arithmetic).
# Student: PE-Core-S16-384 re-headed as a Spatial tower at 512 px (32 x 32 tokens), position table resized to 32 x 32.
_base_ = './_distill_base.py'
work_dir = 'work_dirs/distill_pe_spatial_s16'

student = dict(core='PE-Core-S16-384', checkpoint=None, ls_init=None,  # the released small models have no LayerScale
               config_overrides=dict(image_size=512), drop_path_rate=0.0, grad_checkpointing=False)  # drop path: ours
settings = dict(image_size=512)
