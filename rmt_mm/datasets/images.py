"""Image files checked before a run reads them: needs OpenCV and numpy only (no mmdet, mmseg or
mmcv), so detection, segmentation and deployment share it."""
from typing import Optional

import numpy as np


def image_file_problem(path: str) -> Optional[str]:
    """Why the image file at ``path`` cannot be used, or ``None`` if it decodes (as mmcv's
    default ``cv2`` backend decodes it)."""
    import cv2
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as err:
        return f'cannot be read ({err.strerror})'
    if not data:
        return 'empty file'
    try:
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as err:
        return f'cannot be decoded as an image ({err})'
    return None if decoded is not None else 'cannot be decoded as an image'
