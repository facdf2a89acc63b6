"""Data: the label check of segmentation pipelines (``transforms``), checked COCO annotations
(``coco_checks``, ``checked_coco``) and the generators of the synthetic demo sets (``shapes``,
``shapes_seg``). Import the submodule you need: ``import rmt_mm`` loads only what registration
does."""
