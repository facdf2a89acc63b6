# UPerNet, ResTv2-S, ADE20K 512x512, 160k (upstream `upernet_restv2_small_512_160k_ade20k`).
# Same usage as upernet_restv2_t_ade20k-512x512-160k.py (convert with --arch restv2_small).
_base_ = './upernet_restv2_t_ade20k-512x512-160k.py'

model = dict(
    backbone=dict(
        arch='small',
        drop_path_rate=0.2,
        init_cfg=dict(checkpoint='checkpoints/restv2_s_in1k.pth')))

# AdamW lr 1.5e-4, weight decay 0.05, with stage-wise lr decay 0.9. Upstream names a
# 'stage_wise' LearningRateDecayOptimizerConstructor its repository never shipped (these configs
# do not run there); ResTStageDecayOptimizerConstructor (rmt_mm/engine/optimizers/) implements it:
# lr x 0.9^5 for the stem, 0.9^(5-k) for stage k, x1 for the heads and the new output norms; no
# weight decay on biases and norm weights.
optim_wrapper = dict(
    constructor='ResTStageDecayOptimizerConstructor',
    optimizer=dict(lr=1.5e-4, weight_decay=0.05),
    paramwise_cfg=dict(_delete_=True, decay_rate=0.9))
