# detectron2 LazyConfig: Mask R-CNN, PE-Spatial G (patch 16), LVIS v1, "75 epochs": the released recipe (54.2 box AP
# / 49.3 mask AP), as Meta's mask_rcnn_PEspatial_G_lvis75ep.py sets it: the COCO G model with 1203 classes, sigmoid
# classification with the federated loss (50 classes per batch, weights = image frequency ** 0.5), repeat-factor
# sampling (threshold 0.001), 300 detections per image at score >= 0.02, LVIS evaluation with 300 detections.
#
# Schedule arithmetic: Meta scales ViTDet's COCO 100-epoch schedule by 3/4 with integer division, so its "75 epochs"
# are COCO-sized epochs:
#   184,375 x 3 // 4 = 138,281 iterations at batch 64 (8.85M images = 88.3 passes over LVIS v1 train's 100,170)
#   lr x0.1 at 163,889 x 3 // 4 = 122,916 and 177,546 x 3 // 4 = 133,159; warm-up 250 iterations
#   evaluation every 30,000 iterations (the release's eval_period)
# Data: detectron2's builtin "lvis_v1_train"/"lvis_v1_val" under $DETECTRON2_DATASETS: lvis/lvis_v1_{train,val}.json
# and coco/{train2017,val2017}/.
from detectron2.config import LazyCall as L
from detectron2.data.samplers import RepeatFactorTrainingSampler
from detectron2.evaluation.lvis_evaluation import LVISEvaluator

from pe_dense.d2 import fed_loss_weights_getter

from .mask_rcnn_pe_g14_coco import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.roi_heads.num_classes = 1203
predictor = model.roi_heads.box_predictor
predictor.test_score_thresh = 0.02
predictor.test_topk_per_image = 300
predictor.use_sigmoid_ce = True
predictor.use_fed_loss = True
predictor.get_fed_loss_cls_weights = L(fed_loss_weights_getter)(  # called when the head is built
    dataset_names="${dataloader.train.dataset.names}", freq_weight_power=0.5)

dataloader.train.dataset.names = "lvis_v1_train"
dataloader.train.sampler = L(RepeatFactorTrainingSampler)(
    repeat_factors=L(RepeatFactorTrainingSampler.repeat_factors_from_category_frequency)(
        dataset_dicts="${dataloader.train.dataset}", repeat_thresh=0.001))
dataloader.test.dataset.names = "lvis_v1_val"
dataloader.evaluator = L(LVISEvaluator)(dataset_name="${..test.dataset.names}", max_dets_per_image=300,
                                        output_dir="${train.output_dir}")

train.eval_period = 30_000
train.max_iter = 184_375 * 3 // 4  # 138,281
lr_multiplier.scheduler.milestones = [163_889 * 3 // 4, 177_546 * 3 // 4]  # 122,916 and 133,159
lr_multiplier.scheduler.num_updates = train.max_iter
lr_multiplier.warmup_length = 250 / train.max_iter
