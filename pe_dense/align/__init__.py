"""SAM 2-guided spatial alignment of PE (PE-Core -> PE-Spatial) and G -> small distillation (issue 11).

Loss maths and masking import without sam2; ``sam_targets``, ``trainer``, ``target_cache`` and ``run`` are
imported from their modules (``from pe_dense.align.trainer import AlignTrainer``). Importing registers nothing.
"""
from .losses import core_loss, feature_distill_loss, loc_loss, pairwise_cosine, sharpen, strip_prefix
from .masking import apply_token_mask, batch_block_masks, block_mask
from .settings import AlignSettings

__all__ = ["core_loss", "loc_loss", "pairwise_cosine", "sharpen", "strip_prefix", "feature_distill_loss",
           "block_mask", "batch_block_masks", "apply_token_mask", "AlignSettings"]
