# PE-Spatial-B16 distilled from PE-Spatial G (see _distill_base.py for the losses and schedule arithmetic).
# Student: PE-Core-B16-224 re-headed as a Spatial tower at 512 px (32 x 32 tokens), position table resized to 32 x 32.
_base_ = './_distill_base.py'
work_dir = 'work_dirs/distill_pe_spatial_b16'

student = dict(core='PE-Core-B16-224', checkpoint=None, ls_init=None,  # the released small models have no LayerScale
               config_overrides=dict(image_size=512), drop_path_rate=0.1, grad_checkpointing=False)  # drop path: ours
settings = dict(image_size=512)
