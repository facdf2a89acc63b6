"""COCO annotation files are checked when the dataset loads: every kind of bad annotation,
image or file stops the run with one line naming the file and the annotation id (or is dropped
and logged on request); generated and valid data pass; the tools report it in one line."""
import copy
import json
import re

import pytest
import torch

from rmt_mm.cli import load_config
from rmt_mm.datasets.coco_checks import check_coco, read_coco_json
from rmt_mm.datasets.shapes import make_shapes_coco, make_split
from rmt_mm.errors import DataError

from helpers.det import DEMO_CONFIG, data_options
from helpers.tools import assert_one_line_error, tool_main


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    """A generated set (crowd regions and empty images included)."""
    root = tmp_path_factory.mktemp('shapes')
    make_shapes_coco(str(root), num_train=12, num_val=2, seed=3, size_range=(64, 96),
                     crowd_prob=0.5)
    return root


@pytest.fixture(scope='module')
def coco(shapes):
    return json.loads((shapes / 'annotations' / 'train.json').read_text())


def _first(coco, crowd=False):
    return next(a for a in coco['annotations'] if bool(a.get('iscrowd')) == crowd)


def _image_of(coco, ann):
    return next(i for i in coco['images'] if i['id'] == ann['image_id'])


def _set(field, value, crowd=False):
    def edit(coco):
        _first(coco, crowd)[field] = value(coco, _first(coco, crowd)) if callable(value) \
            else value
    return edit


#: name -> (edit of a valid file, reason the report gives)
BAD = {
    'box outside its image': (_set('bbox', lambda c, a: [_image_of(c, a)['width'] - 5, 1, 20,
                                                          10]), 'box outside its image'),
    'box with negative size': (_set('bbox', [4, 4, -3, 10]), 'box with negative size'),
    'box with NaN': (_set('bbox', [4, 4, float('nan'), 10]), 'malformed box'),
    'category not in categories': (_set('category_id', 99), 'category not in categories'),
    'polygon of two points': (_set('segmentation', [[1, 1, 5, 5]]),
                              'polygon with fewer than 3 points'),
    'polygon of odd length': (_set('segmentation', [[1, 1, 5, 5, 9, 1, 4]]),
                              'polygon with fewer than 3 points'),
    'RLE of another size': (_set('segmentation', lambda c, a: {**a['segmentation'],
                                                               'size': [7, 7]}, crowd=True),
                            'RLE size differs from its image'),
    'unknown image': (_set('image_id', 10 ** 6), 'image not in images'),
    'duplicate id': (lambda c: c['annotations'].append(copy.deepcopy(_first(c))),
                     'duplicate annotation id'),
}


@pytest.mark.parametrize('name', list(BAD))
def test_each_problem_is_found_with_its_annotation_id(coco, name):
    edit, reason = BAD[name]
    bad = copy.deepcopy(coco)
    edit(bad)
    report = check_coco(bad, 'train.json')
    assert [p.reason for p in report.bad] == [reason]
    target = _first(bad, crowd=name == 'RLE of another size')
    assert report.bad[0].ann_id == target['id']
    assert report.bad[0].describe().startswith(f'annotation {target["id"]} (image ')


def test_generated_and_valid_data_pass(coco, shapes):
    report = check_coco(coco, 'train.json', image_path=lambda img: str(shapes / 'train' /
                                                                       img['file_name']))
    assert report == ([], [], 0)
    assert any(a.get('iscrowd') for a in coco['annotations'])  # RLE masks were checked too


def test_allowed_with_a_warning(coco):
    """Zero-size boxes (COCO train2017 has two) are set aside, boxes up to 1 px past the edge
    kept; masks are not checked when the pipeline does not load them."""
    edited = copy.deepcopy(coco)
    first, second = [a for a in edited['annotations'] if not a.get('iscrowd')][:2]
    first['bbox'][3] = 0
    image = _image_of(edited, second)
    second['bbox'] = [image['width'] - 10, 0, 10.5, 5]
    second['segmentation'] = [[1, 1]]
    assert [p.ann_id for p in check_coco(edited, 'x', check_masks=False).degenerate] == \
        [first['id']]
    report = check_coco(edited, 'x', check_masks=False)
    assert report.bad == [] and report.past_edge == 1


@pytest.mark.parametrize('content,message', [
    ('', 'annotation file is empty'),
    ('{"images": [], "annotations": [', 'not valid JSON (truncated?): Expecting value'),
    ('{"images": [] "annotations": []}', "not valid JSON: Expecting ',' delimiter at line 1"),
    ('[1, 2]', 'a JSON list, not a COCO annotation object'),
    ('{"images": [], "annotations": []}', 'no "categories" list'),
])
def test_unreadable_annotation_files(tmp_path, content, message):
    path = tmp_path / 'train.json'
    path.write_text(content)
    with pytest.raises(DataError, match=f'^{re.escape(f"{path}: {message}")}'):
        read_coco_json(str(path))


def _dataset(shapes, ann_file, **kwargs):
    from mmdet.registry import DATASETS
    cfg, _ = load_config(str(DEMO_CONFIG))
    dataset = copy.deepcopy(cfg.train_dataloader.dataset)
    dataset.update(data_root=str(shapes), ann_file=ann_file, **kwargs)
    return DATASETS.build(dataset)


def _write(shapes, coco, name='edited.json'):
    path = shapes / 'annotations' / name
    path.write_text(json.dumps(coco))
    return f'annotations/{name}'


def test_dataset_refuses_or_drops(shapes, coco):
    edited = copy.deepcopy(coco)
    first, second = [a for a in edited['annotations'] if not a.get('iscrowd')][:2]
    first['category_id'] = 99
    second['segmentation'] = [[1, 1, 5, 5]]
    ann_file = _write(shapes, edited)
    with pytest.raises(DataError) as info:
        _dataset(shapes, ann_file)
    assert str(info.value).startswith(f'{shapes}/{ann_file}: annotation ')
    assert '2 problems in all (1 category not in categories, 1 polygon with fewer than 3 ' \
           "points); fix the file, or set the dataset's bad_annotations='drop'" in str(info.value)
    def instances(dataset):
        return sum(len(dataset.get_data_info(i)['instances']) for i in range(len(dataset)))

    dropped = _dataset(shapes, ann_file, bad_annotations='drop')
    assert instances(dropped) == instances(_dataset(shapes, 'annotations/train.json')) - 2


def test_missing_empty_and_undecodable_images(shapes, coco, tmp_path):
    edited = copy.deepcopy(coco)
    edited['images'][0]['file_name'] = 'gone.png'
    (shapes / 'train' / 'empty.png').write_bytes(b'')
    edited['images'][1]['file_name'] = 'empty.png'
    ann_file = _write(shapes, edited, 'images.json')
    with pytest.raises(DataError, match=rf'image {edited["images"][0]["id"]}: image file '
                       rf'missing or empty \(image file not found: {shapes}/train/gone.png\); '
                       r'2 problems in all'):
        _dataset(shapes, ann_file)
    assert len(_dataset(shapes, ann_file, bad_annotations='drop')) == len(coco['images']) - 2
    # Present but not an image: named when read (test mode: always an error).
    edited = copy.deepcopy(coco)
    (shapes / 'train' / 'junk.png').write_bytes(b'not a png')
    edited['images'][0]['file_name'] = 'junk.png'
    dataset = _dataset(shapes, _write(shapes, edited, 'junk.json'), test_mode=True)
    with pytest.raises(DataError, match=rf'^{shapes}/train/junk.png \(image '
                       rf'{edited["images"][0]["id"]}\): cannot be decoded as an image'):
        dataset[0]


@pytest.mark.slow
def test_tools_report_bad_annotations_in_one_line(shapes, coco, tmp_path, capsys):
    bad = copy.deepcopy(coco)
    BAD['category not in categories'][0](bad)
    root = tmp_path / 'data'
    make_split(str(root), 'val', 2, seed=1, size_range=(64, 80))
    (root / 'train').symlink_to(shapes / 'train')
    (root / 'annotations' / 'train.json').write_text(json.dumps(bad))
    val = json.loads((root / 'annotations' / 'val.json').read_text())
    val['annotations'][0]['bbox'] = [1, 1, -4, 4]
    (root / 'annotations' / 'val.json').write_text(json.dumps(val))
    opts = ['--cfg-options', *data_options(str(root))]
    ann_id = _first(bad)['id']
    code = tool_main('train')([str(DEMO_CONFIG), '--work-dir', str(tmp_path / 'w'), *opts])
    assert_one_line_error(code, capsys.readouterr().err, f'{root}/annotations/train.json: '
                          f'annotation {ann_id} (image {_first(bad)["image_id"]}): category '
                          'not in categories (category_id 99)')
    assert not list((tmp_path / 'w').glob('*.pth'))
    ckpt = tmp_path / 'any.pth'  # readable; the test set is checked before the model loads it
    torch.save({'state_dict': {}}, ckpt)
    code = tool_main('test')([str(DEMO_CONFIG), str(ckpt), '--work-dir', str(tmp_path / 't'),
                              *opts])
    assert_one_line_error(code, capsys.readouterr().err, f'{root}/annotations/val.json: '
                          f'annotation {val["annotations"][0]["id"]}', 'box with negative size')
