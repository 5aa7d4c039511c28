# detectron2 LazyConfig: a CPU smoke run on the bundled demo photos (pe_dense.data.demo: 2 real photos, 27
# instances, 12 classes; train = val), to show the detectron2 path trains and evaluates end to end. Not a recipe:
# random-init PE-Spatial-T16 unless model.backbone.net.checkpoint is set, 256 px, window 8, batch 2; pyramid and
# heads at `head_channels` 64 (recipe 256; box fc 256, recipe 1024), 64 RoIs per image from 200 proposals (recipe
# 512 from 1000): the recipe's 4conv heads on 512 RoIs take about a minute per step on a shared 2-core CPU.
#   python tools/d2_train.py --config-file configs/d2/mask_rcnn_pe_t16_demo.py train.output_dir=work_dirs/d2_demo
# Schedule: 200 iterations at batch 2 (= 200 passes over the 2 photos), warm-up 5% (10 iterations), constant lr.
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.data import get_detection_dataset_dicts
from detectron2.layers import ShapeSpec
from fvcore.common.param_scheduler import LinearParamScheduler

from pe_dense.d2 import register_demo_dataset

from ._base_.mask_rcnn_pe import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

image_size = 256
model.roi_heads.num_classes = 12
model.backbone.square_pad = image_size
head_channels = 64
model.backbone.out_channels = head_channels
model.proposal_generator.head.in_channels = head_channels
model.roi_heads.box_head.input_shape = ShapeSpec(channels=head_channels, height=7, width=7)
model.roi_heads.box_head.conv_dims = [head_channels] * 4
model.roi_heads.box_head.fc_dims = [256]
model.roi_heads.box_predictor.input_shape = ShapeSpec(channels=256)
model.roi_heads.mask_head.input_shape = ShapeSpec(channels=head_channels, height=14, width=14)
model.roi_heads.mask_head.conv_dims = [head_channels] * 5
model.roi_heads.batch_size_per_image = 64
model.proposal_generator.pre_nms_topk = (400, 400)   # (train, test)
model.proposal_generator.post_nms_topk = (200, 200)
net = model.backbone.net
net.model_name = "PE-Spatial-T16-512"
net.img_size = image_size
net.window_size = 8             # 16x16 tokens: 4 windows per image in the windowed blocks
net.global_blocks = (5, 11)
net.drop_path_rate = 0.0

demo_set = L(register_demo_dataset)(name="pe_demo")  # builds the photos once (cached) and returns the name
dataloader.train.dataset = L(get_detection_dataset_dicts)(names=demo_set)
dataloader.train.mapper.augmentations = [
    L(T.RandomFlip)(horizontal=True),
    L(T.ResizeScale)(min_scale=0.8, max_scale=1.25, target_height=image_size, target_width=image_size),
    L(T.FixedSizeCrop)(crop_size=(image_size, image_size), pad=False),
]
dataloader.train.total_batch_size = 2
dataloader.train.mapper.instance_mask_format = "bitmask"  # the demo masks are RLE
dataloader.train.num_workers = 0
dataloader.test.dataset = L(get_detection_dataset_dicts)(names=demo_set, filter_empty=False)
dataloader.test.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=image_size, max_size=image_size)]
dataloader.test.num_workers = 0
dataloader.evaluator.dataset_name = demo_set
dataloader.evaluator.output_dir = "${train.output_dir}"

optimizer.lr = 2e-4
train.device = "cpu"
train.amp.enabled = False
train.ddp.fp16_compression = False
train.max_iter = 200
train.eval_period = 200
train.log_period = 10
train.checkpointer.period = 100
train.output_dir = "work_dirs/d2_demo"
# constant (fvcore's ConstantParamScheduler refuses the final step); any train.max_iter works from the command line
lr_multiplier.scheduler = L(LinearParamScheduler)(start_value=1.0, end_value=1.0)
lr_multiplier.warmup_length = 0.05  # of max_iter: 10 iterations at 200
