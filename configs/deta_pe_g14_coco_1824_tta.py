# Test-time settings of the release's TTA result (66.0 box AP): 2000 queries; in every view the top 2000
# (query, class) pairs go through "quad" soft-NMS (IoU 0.7, decay (1 - IoU) ** 0.5) instead of NMS; the views
# (see deta_pe_g14_coco_1824.py) are merged with the same soft-NMS. The release notes 65.9 with some package
# versions and 66.0 with quad_scale 0.4.
# Run: tools/test.py configs/deta_pe_g14_coco_1824_tta.py CKPT --tta
_base_ = './deta_pe_g14_coco_1824.py'

quad_scale = 0.5
model = dict(
    num_queries=2000,
    test_cfg=dict(pre_topk=2000, max_per_img=None,
                  nms=dict(type='soft_nms', method='quad', iou_threshold=0.7, quad_scale=quad_scale, score_thr=0.001)))
tta_model = dict(tta_cfg=dict(nms=dict(quad_scale=quad_scale)))
