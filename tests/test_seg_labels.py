"""CheckSegLabels: bad label maps are refused with the file name and what is wrong."""
import numpy as np
import pytest
from PIL import Image

from rmt_mm.cli import load_config
from rmt_mm.datasets.shapes_seg import make_shapes_ade

from helpers import REPO
from helpers.seg import DEMO_CONFIG

FULL_CONFIG = str(REPO / 'configs' / 'fpn_rmt_t_ade20k-512x512-80k.py')  # all 150 classes


@pytest.fixture
def dataset_factory(tmp_path):
    """Build the demo's (6-class subset, label-mapped) or the full 150-class ADE20K test set
    over a freshly generated 2-image set."""
    from mmseg.registry import DATASETS
    make_shapes_ade(str(tmp_path), num_train=0, num_val=2, size=(40, 48), seed=3)

    def build(config: str = str(DEMO_CONFIG)):
        cfg, _ = load_config(config)
        cfg.test_dataloader.dataset.data_root = str(tmp_path)
        return DATASETS.build(cfg.test_dataloader.dataset)

    return tmp_path, build


def annotation(root, i=1):
    return root / 'annotations' / 'validation' / f'shapes_val_{i:05d}.png'


def test_good_labels_pass_and_are_mapped(dataset_factory):
    root, build = dataset_factory
    seg = build()[1]['data_samples'].gt_sem_seg.data
    assert set(seg.unique().tolist()) <= set(range(6)) | {255}
    full = build(FULL_CONFIG)[1]['data_samples'].gt_sem_seg.data
    raw = np.asarray(Image.open(annotation(root)))
    assert (full.numpy()[0] == np.where(raw == 0, 255, raw.astype(int) - 1)).all()


@pytest.mark.parametrize('config,value', [
    (str(DEMO_CONFIG), 151),  # beyond ADE20K's ids: not even label-mappable
    (FULL_CONFIG, 200),
])
def test_out_of_range_values_are_named(dataset_factory, config, value):
    root, build = dataset_factory
    label = np.asarray(Image.open(annotation(root))).copy()
    label[3, 4:6] = value
    label[5, 5] = 255  # ignore is fine
    Image.fromarray(label).save(annotation(root))
    dataset = build(config)
    dataset[0]  # the other image is fine
    with pytest.raises(ValueError, match=rf'^{annotation(root)}: label values \[{value}\] are not '
                       r'classes of this dataset: after loading \(reduce_zero_label: value - 1\) '
                       r'labels must be 0\.\.\d+ or 255 \(ignore\)$'):
        dataset[1]


def test_size_mismatch_is_named(dataset_factory):
    root, build = dataset_factory
    ann = annotation(root, 0)
    Image.fromarray(np.asarray(Image.open(ann))[:-3]).save(ann)
    dataset = build()
    img = root / 'images' / 'validation' / 'shapes_val_00000.jpg'
    h, w = np.asarray(Image.open(img)).shape[:2]
    with pytest.raises(ValueError, match=rf'^{ann}: label map is {h - 3}x{w} \(HxW\) but its '
                       rf'image {img} is {h}x{w}$'):
        dataset[0]


def test_rgb_label_map_is_refused(dataset_factory):
    root, build = dataset_factory
    ann = annotation(root, 0)
    Image.fromarray(np.asarray(Image.open(ann))).convert('RGB').save(ann)
    with pytest.raises(ValueError, match=rf'^{ann}: label map has shape \(\d+, \d+, 3\)'):
        build()[0]


def test_samples_without_labels_pass_unchanged():
    """mmseg's inference drops LoadAnnotations and keeps the rest of the test pipeline."""
    from rmt_mm.datasets.transforms import CheckSegLabels
    results = dict(img=np.zeros((5, 7, 3), np.uint8), ori_shape=(5, 7))
    assert CheckSegLabels(num_classes=3)(dict(results)) == results
