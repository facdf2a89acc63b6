# `make demo` and `make test` each set up (or reuse) the stack's venv first; see
# scripts/setup_env.sh. STACK=onedl (default, .venv) or STACK=openmmlab (.venv-openmmlab, the
# 2024 stack: torch 2.1, mmcv 2.1.0).
STACK ?= onedl
VENV_onedl := .venv
VENV_openmmlab := .venv-openmmlab
RMT_MM_VENV ?= $(VENV_$(STACK))
export STACK RMT_MM_VENV
PY := $(RMT_MM_VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: env demo demo-seg demo-dino demo-mask2former test test-other-vector-path test-cluster zoo
env:
	bash scripts/setup_env.sh

# The demo: generate the shapes set, measure the untrained model, train RMT-T Mask R-CNN on CPU,
# draw one validation image and evaluate (bbox/segm AP) with tools/test.py.
DEMO_CONFIG := configs/demo/maskrcnn_rmt_t_shapes.py
DEMO_WORK := work_dirs/demo
DEMO_CKPT = $$(cat $(DEMO_WORK)/last_checkpoint)
# One BLAS thread per process: on a small, shared CPU oversubscribed threads are many times slower.
DEMO_RUN := OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} PYTHONWARNINGS=ignore $(PY)

demo: env
	$(DEMO_RUN) tools/make_shapes_coco.py data/shapes_coco
	$(DEMO_RUN) tools/init_checkpoint.py $(DEMO_CONFIG) $(DEMO_WORK)/untrained.pth --work-dir $(DEMO_WORK)/untrained
	$(DEMO_RUN) tools/test.py $(DEMO_CONFIG) $(DEMO_WORK)/untrained.pth --work-dir $(DEMO_WORK)/untrained
	@# tools/test.py evaluates below, so the end-of-training validation is skipped here.
	$(DEMO_RUN) tools/train.py $(DEMO_CONFIG) --work-dir $(DEMO_WORK) --cfg-options train_cfg.val_interval=1000000
	$(DEMO_RUN) tools/demo.py data/shapes_coco/val/000001.png $(DEMO_CONFIG) $(DEMO_CKPT) --out $(DEMO_WORK)/result.png
	$(DEMO_RUN) tools/test.py $(DEMO_CONFIG) $(DEMO_CKPT) --work-dir $(DEMO_WORK)/test

# The same demos with the query-based heads: DINO (boxes) and Mask2Former (semantic).
demo-dino:
	$(MAKE) demo DEMO_CONFIG=configs/demo/dino-4scale_rmt-t_shapes.py DEMO_WORK=work_dirs/demo-dino
demo-mask2former:
	$(MAKE) demo-seg SEG_CFG=configs/demo/mask2former_rmt-t_shapes-seg.py SEG_DIR=work_dirs/demo-mask2former

zoo: env
	$(PY) tools/model_zoo.py

# Segmentation demo: synthetic ADE20K-layout data, RMT-T Semantic FPN trained from scratch on CPU,
# mIoU / per-class IoU of the untrained and the trained model, colour overlays of the predictions.
SEG_CFG := configs/demo/fpn_rmt_t_shapes-seg.py
SEG_DIR := work_dirs/demo-seg
demo-seg: env
	$(DEMO_RUN) tools/make_shapes_ade.py data/shapes_ade
	$(DEMO_RUN) tools/init_checkpoint.py $(SEG_CFG) $(SEG_DIR)/untrained.pth --work-dir $(SEG_DIR)/untrained
	$(DEMO_RUN) tools/test.py $(SEG_CFG) $(SEG_DIR)/untrained.pth --work-dir $(SEG_DIR)/untrained
	$(DEMO_RUN) tools/train.py $(SEG_CFG) --work-dir $(SEG_DIR)
	$(DEMO_RUN) tools/test.py $(SEG_CFG) "$$(cat $(SEG_DIR)/last_checkpoint)" --work-dir $(SEG_DIR)/trained \
		--show-dir $(SEG_DIR)/overlays
	$(DEMO_RUN) tools/seg_demo.py $(SEG_DIR)/untrained $(SEG_DIR)/trained --overlays $(SEG_DIR)/overlays

# Style (ruff) and the declared Python floor (vermin: no syntax or library newer than 3.9), then
# the suite in TEST_WORKERS processes (pytest-xdist; a test file's tests share one) of one BLAS
# thread each: most tests keep one core busy at most (tool start-up, Python-bound steps).
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); echo $$(( n < 4 ? n : 4 )))
test: env
	$(PY) -m ruff check .
	$(RMT_MM_VENV)/bin/vermin --no-tips --violations --eval-annotations -t=3.9- rmt_mm tools tests configs
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# The cluster tests (docs/cluster.md): torchrun preemption, two nodes, and a real one-node Slurm
# (scripts/slurm_cluster.sh; installs slurm-wlm and munge as root, else those tests skip).
test-cluster: env
	RMT_MM_CLUSTER_TESTS=1 $(PY) -m pytest -q tests/test_cluster.py $(PYTEST_ARGS)

# FlexAttention's CPU kernels as inductor generates them for AVX2 (keys padded), on a CPU whose
# own vectors are wider (AVX-512); on an AVX2 CPU `make test` runs that path already and the
# AVX-512 one cannot run (docs/kernels.md).
NATIVE_PADDED = $$($(PY) -c "import torch; from rmt_mm.models.masa_flex import \
	cpu_keys_need_padding as padded; print(int(padded(torch.device('cpu'))))")
test-other-vector-path: env
	@if [ "$(NATIVE_PADDED)" = 1 ]; then \
		echo "this CPU's vectors are AVX2: make test ran the padded path; no other to run here"; \
	else ATEN_CPU_CAPABILITY=avx2 $(PY) -m pytest -q tests/test_flex.py $(PYTEST_ARGS); fi
