"""Helpers shared by the detection tests."""
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / 'configs' / 'demo' / 'maskrcnn_rmt_t_shapes.py'
#: The parity fixtures' tiny arch (decomposed attention in stages 1-3, as RMT-S/B/L).
TINY_ARCH = dict(embed_dims=[16, 32, 64, 96], depths=[1, 2, 2, 1], num_heads=[2, 2, 4, 4],
                 init_values=[2, 2, 2, 2], heads_ranges=[4, 4, 6, 6], mlp_ratios=[3, 3, 3, 3],
                 layerscales=[False, False, True, True], layer_init_values=1e-6,
                 chunkwise_recurrents=[True, True, True, False])


def data_options(data_root: str, img_scale: int = 128) -> List[str]:
    """--cfg-options pointing the demo config at another COCO-format set, at a small scale."""
    root = data_root.rstrip('/') + '/'
    opts = [f'{split}_dataloader.dataset.data_root={root}' for split in ('train', 'val', 'test')]
    opts += [f'{split}_evaluator.ann_file={root}annotations/val.json' for split in ('val', 'test')]
    opts += [f'train_dataloader.dataset.pipeline.2.scale=({img_scale},{img_scale})',
             f'val_dataloader.dataset.pipeline.1.scale=({img_scale},{img_scale})',
             f'test_dataloader.dataset.pipeline.1.scale=({img_scale},{img_scale})']
    return opts


def run_tool(args: List[str], timeout: int = 600, env: Dict[str, str] = None,
             python_script: bool = True) -> subprocess.CompletedProcess:
    """Run a tool as a user would; fail with its output if it exits non-zero."""
    full_env = dict(os.environ, OMP_NUM_THREADS=os.environ.get('OMP_NUM_THREADS', '1'),
                    PYTHONWARNINGS='ignore', **(env or {}))
    cmd = [sys.executable, *args] if python_script else args
    proc = subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f'{" ".join(cmd)} failed:\n{proc.stdout[-3000:]}\n' \
                                 f'{proc.stderr[-5000:]}'
    return proc


def fake_detection_batch(model, height: int, width: int):
    """One image with two boxes and masks, run through the model's data preprocessor."""
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData

    boxes = [[4, 6, 40, 50], [30, 10, 60, 40]]
    masks = np.zeros((2, height, width), np.uint8)
    for mask, (x0, y0, x1, y1) in zip(masks, boxes):
        mask[y0:y1, x0:x1] = 1
    sample = DetDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(height, width),
                                         scale_factor=(1.0, 1.0)))
    sample.gt_instances = InstanceData(bboxes=torch.tensor(boxes, dtype=torch.float32),
                                       labels=torch.tensor([0, 1]),
                                       masks=BitmapMasks(masks, height, width))
    gen = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, height, width), generator=gen, dtype=torch.uint8)
    return model.data_preprocessor(dict(inputs=[image], data_samples=[sample]), training=True)
