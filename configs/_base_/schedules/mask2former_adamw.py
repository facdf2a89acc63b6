# Mask2Former's optimizer in mmdet's and mmseg's Swin configs, in RMT terms: AdamW lr 1e-4,
# weight decay 0.05, gradient norm clipped to 0.01; the backbone at 0.1 x lr; no weight decay on
# the queries' and levels' embeddings, on the head's norm layers (norm_decay_mult) nor on the
# backbone's norms: RMT's block, output and patch-merging norms take the place of Swin's (its
# stem BNs keep decay, as in the RMT recipes).
backbone_norm = dict(lr_mult=0.1, decay_mult=0.0)
embed_multi = dict(lr_mult=1.0, decay_mult=0.0)
custom_keys = {
    'backbone': dict(lr_mult=0.1, decay_mult=1.0),
    'retention_layer_norm': backbone_norm,
    'final_layer_norm': backbone_norm,
    'downsample.norm': backbone_norm,
    'extra_norms': backbone_norm,
    'query_embed': embed_multi,
    'query_feat': embed_multi,
    'level_embed': embed_multi,
}
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05, eps=1e-8, betas=(0.9, 0.999)),
    clip_grad=dict(max_norm=0.01, norm_type=2),
    paramwise_cfg=dict(custom_keys=custom_keys, norm_decay_mult=0.0))
