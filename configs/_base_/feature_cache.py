# Frozen-feature cache (pe_dense.features), shared by the probe bases: with feature_cache.dir set, training reads the
# frozen backbone's outputs for num_views pre-drawn augmented views per image (build them with
# tools/cache_features.py CONFIG); epoch e trains on view e % num_views. dir=None trains from images. Validation and
# test always run on images. A config that uses it lists 'pe_dense.features' in its custom_imports.
runner_type = 'FeatureCacheRunner'  # a plain mmengine Runner while feature_cache.dir is None
feature_cache = dict(dir=None, num_views=4, aug_seed=0, dtype='float16')
default_scope = 'mmseg'
