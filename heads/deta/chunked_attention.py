"""Multi-scale deformable attention that samples the queries in chunks, so memory stays bounded at high resolution.

mmcv's PyTorch path (what runs on CPU, and what exporters trace) builds, per level, a tensor of
queries x heads x points x channels before the weighted sum: for DETA's encoder at 1824 px (69,295 tokens over 5
levels, 8 heads, 4 points, 256 channels) that is about 1.4 GB in fp32, twice over. Each query's output depends only
on its own offsets and weights and on the shared values, so sampling ``query_chunk`` queries at a time gives the
same numbers (the projections still run once on all tokens) with that peak divided by the number of chunks.
mmcv's CUDA kernel never materialises the sampled values; there chunking only adds kernel launches.

The parameters, their names and their initialisation are mmcv's (this is a subclass), so checkpoints are unchanged.
"""
from __future__ import annotations

from typing import Optional

import torch
from mmcv.ops.multi_scale_deform_attn import (
    MultiScaleDeformableAttention,
    MultiScaleDeformableAttnFunction,
    multi_scale_deformable_attn_pytorch,
)
from torch import Tensor, nn


class QueryChunkedDeformableAttention(MultiScaleDeformableAttention):
    """mmcv's ``MultiScaleDeformableAttention`` with the sampling step run over at most ``query_chunk`` queries."""

    def __init__(self, *args, query_chunk: int = 8192, **kwargs) -> None:
        if query_chunk < 1:
            raise ValueError(f"query_chunk must be a positive number of queries, got {query_chunk}")
        super().__init__(*args, **kwargs)
        self.query_chunk = int(query_chunk)

    def _sample(self, value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor, locations: Tensor,
                weights: Tensor) -> Tensor:
        if value.is_cuda:
            return MultiScaleDeformableAttnFunction.apply(value, spatial_shapes, level_start_index, locations,
                                                          weights, self.im2col_step)
        return multi_scale_deformable_attn_pytorch(value, spatial_shapes, locations, weights)

    def forward(self, query: Tensor, key: Optional[Tensor] = None, value: Optional[Tensor] = None,
                identity: Optional[Tensor] = None, query_pos: Optional[Tensor] = None,
                key_padding_mask: Optional[Tensor] = None, reference_points: Optional[Tensor] = None,
                spatial_shapes: Optional[Tensor] = None, level_start_index: Optional[Tensor] = None,
                **kwargs) -> Tensor:
        value = query if value is None else value
        identity = query if identity is None else identity
        if query_pos is not None:
            query = query + query_pos
        if not self.batch_first:
            query, value = query.permute(1, 0, 2), value.permute(1, 0, 2)
        bs, num_query, _ = query.shape
        num_value = value.shape[1]
        value = self.value_proj(value)
        if key_padding_mask is not None:
            value = value.masked_fill(key_padding_mask[..., None], 0.0)
        value = value.view(bs, num_value, self.num_heads, -1)
        normaliser = torch.stack([spatial_shapes[..., 1], spatial_shapes[..., 0]], -1)

        outputs = []
        for start in range(0, num_query, self.query_chunk):
            q = query[:, start:start + self.query_chunk]
            ref = reference_points[:, start:start + self.query_chunk]
            n = q.shape[1]
            offsets = self.sampling_offsets(q).view(bs, n, self.num_heads, self.num_levels, self.num_points, 2)
            weights = self.attention_weights(q).view(bs, n, self.num_heads, self.num_levels * self.num_points)
            weights = weights.softmax(-1).view(bs, n, self.num_heads, self.num_levels, self.num_points)
            if ref.shape[-1] == 2:
                locations = ref[:, :, None, :, None, :] + offsets / normaliser[None, None, None, :, None, :]
            elif ref.shape[-1] == 4:
                locations = (ref[:, :, None, :, None, :2]
                             + offsets / self.num_points * ref[:, :, None, :, None, 2:] * 0.5)
            else:
                raise ValueError(f"reference_points end in 2 (points) or 4 (boxes), got {ref.shape[-1]}")
            outputs.append(self._sample(value, spatial_shapes, level_start_index, locations, weights))
        output = self.output_proj(torch.cat(outputs, dim=1))
        if not self.batch_first:
            output = output.permute(1, 0, 2)
        return self.dropout(output) + identity


def chunk_deformable_attention(model: nn.Module, query_chunk: int) -> int:
    """Turn every mmcv deformable attention inside ``model`` into the chunked subclass, in place; how many.

    The modules keep their parameters (only the class changes: the subclass adds no parameters or buffers), so
    this works on a built and loaded model as well as at construction.
    """
    count = 0
    for module in model.modules():
        if type(module) is MultiScaleDeformableAttention:
            module.__class__ = QueryChunkedDeformableAttention
            module.query_chunk = int(query_chunk)
            count += 1
        elif isinstance(module, QueryChunkedDeformableAttention):
            module.query_chunk = int(query_chunk)
            count += 1
    return count
