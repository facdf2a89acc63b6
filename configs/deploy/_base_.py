# What every deploy config here shares: ONNX at mmdeploy's default opset 11 with the TorchScript
# exporter (mmdeploy 1.3.1's only one), run by onnxruntime with its default graph optimizations.
# The files below each set a codebase/task and, for the dynamic ones, dynamic_axes.
onnx_config = dict(
    type='onnx',
    export_params=True,
    keep_initializers_as_inputs=False,
    opset_version=11,
    save_file='end2end.onnx',
    input_names=['input'],
    output_names=['output'],
    input_shape=None,
    optimize=True)
backend_config = dict(type='onnxruntime')
