# UperNet / Semantic FPN with an RMT/ResT backbone (whole-image inference), fixed input size.
# The file outputs the logits (N x classes x H x W, with_argmax=False); mmdeploy's wrapper takes
# their argmax. tools/deploy.py (rmt_mm.deploy.register_rewriters) exports UperNet's pyramid
# pooling and Semantic FPN's upsampling exactly at every size (docs/deploy.md).
_base_ = ['./_base_.py']
codebase_config = dict(type='mmseg', task='Segmentation', with_argmax=False)
