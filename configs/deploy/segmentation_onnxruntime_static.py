# UperNet / Semantic FPN with an RMT/ResT backbone (whole-image inference), fixed input size.
# The file outputs the logits (N x classes x H x W, with_argmax=False); mmdeploy's wrapper takes
# their argmax. UperNet's pyramid pooling: mmdeploy writes adaptive_avg_pool2d as a fixed-stride
# average pool, equal only where the stride-32 map divides by every pool scale (1, 2, 3, 6):
# inputs of a multiple of 192 (docs/deploy.md).
_base_ = ['./_base_.py']
codebase_config = dict(type='mmseg', task='Segmentation', with_argmax=False)
