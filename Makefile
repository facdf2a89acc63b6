# `make demo` and `make test` each set up (or reuse) .venv first; see scripts/setup_env.sh.
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: env demo demo-seg test
env:
	bash scripts/setup_env.sh

demo: env
	$(PY) tools/model_zoo.py

# Segmentation demo: synthetic ADE20K-layout data, RMT-T Semantic FPN trained from scratch on CPU,
# mIoU / per-class IoU of the untrained and the trained model, colour overlays of the predictions.
SEG_CFG := configs/demo/fpn_rmt_t_shapes-seg.py
SEG_DIR := work_dirs/demo-seg
demo-seg: env
	$(PY) tools/make_shapes_ade.py data/shapes_ade
	$(PY) tools/seg_demo.py init $(SEG_CFG) $(SEG_DIR)/untrained.pth
	$(PY) tools/test.py $(SEG_CFG) $(SEG_DIR)/untrained.pth --work-dir $(SEG_DIR)/untrained
	$(PY) tools/train.py $(SEG_CFG) --work-dir $(SEG_DIR)
	$(PY) tools/test.py $(SEG_CFG) "$$(cat $(SEG_DIR)/last_checkpoint)" --work-dir $(SEG_DIR)/trained \
		--show-dir $(SEG_DIR)/overlays
	$(PY) tools/seg_demo.py compare $(SEG_DIR)/untrained $(SEG_DIR)/trained --overlays $(SEG_DIR)/overlays

test: env
	$(PY) -m pytest -q $(PYTEST_ARGS)
