"""The PE vision tower: configs, blocks, RoPE, checkpoints."""
