"""DETA detector: mmdet's two-stage Deformable DETR with iterative box refinement, plus what DETA changes.

Built on ``mmdet.models.DeformableDETR`` (encoder, decoder, proposal generation, box refinement are mmdet's
and mmcv's); this class adds only what the public DETA code (jozhang97/DETA, as used by the PE release)
does differently before the decoder:

- query selection per level with NMS (:mod:`.query_selection`) instead of the global top-Q;
- the decoder's content queries also receive the selected encoder features: ``query += LN(Linear(memory))``
  on the selected (detached) features, DETA's ``pix_trans``;
- the head receives what the stage-1 assignment needs: the fixed anchor boxes and their validity.
"""
from __future__ import annotations

import copy
from typing import Dict, Optional, Tuple

import torch
from mmdet.models.detectors import DeformableDETR
from mmdet.registry import MODELS
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from torch import Tensor, nn

from .assignment import stage1_assigner_cfg, stage2_assigner_cfg
from .chunked_attention import chunk_deformable_attention
from .query_selection import select_queries

DEFAULT_QUERY_SELECTION = dict(pre_nms_topk=1000, nms_iou=0.9)


@MODELS.register_module()
class DETA(DeformableDETR):
    """DETA ("NMS Strikes Back", Ouyang-Zhang et al. 2022) on mmdet.

    Args:
        query_selection: ``dict(pre_nms_topk=1000, nms_iou=0.9)`` (DETA), or ``None`` for Deformable DETR's
            global top-Q by score.
        with_box_refine: iterative box refinement (DETA: True).
        as_two_stage: must be True: DETA's queries are encoder proposals.
        msda_query_chunk: sample at most this many queries at a time in every deformable attention
            (``QueryChunkedDeformableAttention``): same numbers, bounded memory at high resolution on CPU and in
            exported graphs. ``None`` keeps mmcv's module.
        other args: see ``DeformableDETR``; ``num_queries`` (PE recipe: 900) also sizes the stage-2 sample
            when ``train_cfg.stage2.sampler.num`` is None.
    """

    def __init__(self, *args, query_selection: Optional[dict] = DEFAULT_QUERY_SELECTION,
                 with_box_refine: bool = True, as_two_stage: bool = True, num_queries: int = 900,
                 train_cfg: Optional[dict] = None, msda_query_chunk: Optional[int] = None, **kwargs) -> None:
        if not as_two_stage:
            raise ValueError("DETA selects its queries from encoder proposals: as_two_stage must be True")
        self.query_selection = None if query_selection is None else {**DEFAULT_QUERY_SELECTION,
                                                                     **query_selection}
        if train_cfg is not None:  # DETA's assignment defaults for missing stages; stage 2 samples Q queries
            train_cfg = copy.deepcopy(train_cfg)
            train_cfg.setdefault("stage1", stage1_assigner_cfg())
            stage2 = train_cfg.setdefault("stage2", stage2_assigner_cfg(num=None))
            if stage2["sampler"].get("num") is None:
                stage2["sampler"]["num"] = num_queries
        self.msda_query_chunk = msda_query_chunk
        super().__init__(*args, with_box_refine=with_box_refine, as_two_stage=True, num_queries=num_queries,
                         train_cfg=train_cfg, **kwargs)

    def _init_layers(self) -> None:
        super()._init_layers()
        if self.msda_query_chunk is not None:
            chunk_deformable_attention(self, self.msda_query_chunk)
        self.pix_trans_fc = nn.Linear(self.embed_dims, self.embed_dims)
        self.pix_trans_norm = nn.LayerNorm(self.embed_dims)

    def init_weights(self) -> None:
        super().init_weights()
        nn.init.xavier_uniform_(self.pix_trans_fc.weight)  # DETA: every transformer matrix is Xavier-uniform

    def pre_decoder(self, memory: Tensor, memory_mask: Optional[Tensor],
                    spatial_shapes: Tensor) -> Tuple[Dict, Dict]:
        """Proposals from the encoder, query selection, and the decoder's initial queries and references."""
        bs, _, c = memory.shape
        output_memory, output_proposals = self.gen_encoder_output_proposals(memory, memory_mask, spatial_shapes)
        proposal_head = self.decoder.num_layers  # the extra (last) cls/reg branch scores proposals
        enc_outputs_class = self.bbox_head.cls_branches[proposal_head](output_memory)
        enc_outputs_coord_unact = self.bbox_head.reg_branches[proposal_head](output_memory) + output_proposals

        # Channel 0 is the class-agnostic "object" score of a proposal (its stage-1 target is class 0).
        proposal_scores = enc_outputs_class[..., 0]
        if self.query_selection is None:
            topk = proposal_scores.topk(self.num_queries, dim=1).indices
        else:
            boxes = bbox_cxcywh_to_xyxy(enc_outputs_coord_unact.detach().float().sigmoid()).clamp(0, 1)
            topk = select_queries(proposal_scores, boxes, spatial_shapes, self.num_queries,
                                  **self.query_selection)
        topk_coords_unact = torch.gather(enc_outputs_coord_unact, 1, topk[..., None].expand(-1, -1, 4)).detach()
        reference_points = topk_coords_unact.sigmoid()
        pos_trans_out = self.pos_trans_norm(self.pos_trans_fc(
            self.get_proposal_pos_embed(topk_coords_unact, num_pos_feats=c // 2)))
        query_pos, query = torch.split(pos_trans_out, c, dim=2)
        topk_feats = torch.gather(output_memory, 1, topk[..., None].expand(-1, -1, c)).detach()
        query = query + self.pix_trans_norm(self.pix_trans_fc(topk_feats))

        decoder_inputs_dict = dict(query=query, query_pos=query_pos, memory=memory,
                                   reference_points=reference_points)
        head_inputs_dict = dict(
            enc_outputs_class=enc_outputs_class,
            enc_outputs_coord=enc_outputs_coord_unact.sigmoid(),
            enc_anchors=output_proposals.sigmoid(),
            enc_anchor_valid=torch.isfinite(output_proposals).all(-1),
        ) if self.training else dict()
        return decoder_inputs_dict, head_inputs_dict
