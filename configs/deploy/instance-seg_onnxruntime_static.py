# Mask R-CNN with an RMT/ResT backbone. mmdeploy 1.3.1 exports instance segmentation as its
# ObjectDetection task with a third output: the RoI masks (N x num_dets x 28 x 28), pasted into
# the image by mmdeploy's wrapper (export_postprocess_mask=False), as mmdeploy's own
# mmdet/instance-seg configs do.
_base_ = ['./detection_onnxruntime_static.py']
onnx_config = dict(output_names=['dets', 'labels', 'masks'])
codebase_config = dict(post_processing=dict(export_postprocess_mask=False))
