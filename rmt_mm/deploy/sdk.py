"""The mmdeploy SDK's model folder beside the exported file: ``deploy.json`` (the task and the
network file), ``pipeline.json`` (preprocessing, the network, postprocessing) and
``detail.json`` (the configs it came from), as mmdeploy's ``--dump-info`` writes them. The SDK
(``mmdeploy_runtime``; C, C++, C# APIs) runs the folder without torch or any mm* package.

mmdeploy-runtime 1.3.1's instance-mask postprocessing (``ResizeInstanceMask``) returns garbage
now and then on CPU (scores of 1e27, lost detections; open-mmlab/mmdeploy#2889), also with
this package's Mask R-CNN; the same network with the boxes-only component (``ResizeBBox``)
gives PyTorch's detections every time. ``boxes_only`` writes that component.
"""
import copy
import json
import os.path as osp
from typing import Dict, Optional

from ..errors import ConfigError
from .stack import require_mmdeploy

#: The SDK's postprocessing of an instance-segmentation model, and its boxes-only one.
MASK_COMPONENT, BOX_COMPONENT = 'ResizeInstanceMask', 'ResizeBBox'


def write_sdk_folder(deploy_cfg, model_cfg, work_dir: str, checkpoint: Optional[str],
                     boxes_only: bool = False) -> Dict[str, str]:
    """mmdeploy's ``export2SDK`` into ``work_dir`` (where the network file is), with
    ``boxes_only`` the masks' postprocessing replaced by the boxes' (see the module's
    docstring); returns what the SDK runs: ``task`` (``Detector``/``Segmentor``), ``net``
    (the network file) and ``postprocess`` (the component)."""
    require_mmdeploy()
    from mmdeploy.backend.sdk.export_info import export2SDK
    resize = next((t for t in model_cfg.get('test_pipeline') or [] if t.get('type') == 'Resize'),
                  None)
    static = deploy_cfg.onnx_config.get('input_shape')  # mmdeploy resizes to it
    if resize is not None and not resize.get('scale') and not static:
        raise ConfigError('test_pipeline: the SDK resizes to a size; a Resize without scale '
                          f'({dict(resize)}) has none: --cfg-options or --shape H W')
    # export2SDK edits the configs it is given (the Resize steps' ``scale`` becomes ``size``).
    deploy_cfg, model_cfg = copy.deepcopy(deploy_cfg), copy.deepcopy(model_cfg)
    if 'data_preprocessor' not in model_cfg:  # mmseg's reads the top-level copy of the model's
        model_cfg.data_preprocessor = model_cfg.model.data_preprocessor
    export2SDK(deploy_cfg, model_cfg, work_dir, pth=checkpoint or '', device='cpu')
    pipeline_file = osp.join(work_dir, 'pipeline.json')
    with open(pipeline_file) as f:
        pipeline = json.load(f)
    post = pipeline['pipeline']['tasks'][-1]
    if boxes_only and post['component'] == MASK_COMPONENT:
        post['component'] = BOX_COMPONENT
        with open(pipeline_file, 'w') as f:
            json.dump(pipeline, f, indent=4)
    with open(osp.join(work_dir, 'deploy.json')) as f:
        deploy_info = json.load(f)
    return dict(task=deploy_info['task'], net=deploy_info['models'][0]['net'],
                postprocess=post['component'])
