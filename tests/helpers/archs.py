"""The tests' tiny backbone archs: one per family, each the arch of that family's upstream parity
fixtures, so that one arch serves the fixture tests and every test that only needs a small
model; and the few other archs that a test needs for a reason of its own, each saying why."""
import copy

from rmt_mm.models import RMT, ResT, ResTV2

#: The RMT fixtures' ``tiny_c1110`` arch (test_det_inputs.py checks the fixture manifest): both
#: MaSA forms (decomposed in stages 1-3, as RMT-S/B/L; full in stage 4) and layer scale in
#: stages 3-4.
RMT_TINY = dict(embed_dims=[16, 32, 64, 96], depths=[1, 2, 2, 1], num_heads=[2, 2, 4, 4],
                init_values=[2, 2, 2, 2], heads_ranges=[4, 4, 6, 6], mlp_ratios=[3, 3, 3, 3],
                layerscales=[False, False, True, True], layer_init_values=1e-6,
                chunkwise_recurrents=[True, True, True, False])
#: The archs of the ResT fixtures (test_rest.py checks them against the fixtures' configs).
REST_TINY = dict(embed_dims=[16, 32, 64, 128], depths=[1, 1, 2, 1], num_heads=[1, 2, 4, 8],
                 mlp_ratios=[4, 4, 4, 4], sr_ratios=[8, 4, 2, 1])
RESTV2_TINY = dict(embed_dims=[16, 32, 64, 128], depths=[1, 1, 2, 1], num_heads=[1, 2, 4, 8],
                   sr_ratios=[8, 4, 2, 1])
TINY_ARCHS = {RMT: RMT_TINY, ResT: REST_TINY, ResTV2: RESTV2_TINY}

#: RMT with full MaSA in stages 3 and 4 (decomposed in 1-2) and two blocks in stage 3: the
#: kernel tests (test_masa.py) run the full-attention kernels on two stages, one of them with
#: two blocks, and edit stage 3's decay to check the full kernels' cached tables.
RMT_TWO_FULL_STAGES = dict(embed_dims=[16, 32, 64, 96], depths=[1, 1, 2, 1],
                           num_heads=[2, 2, 4, 4], init_values=[2, 2, 2, 2],
                           heads_ranges=[4, 4, 6, 6], mlp_ratios=[3, 3, 3, 3],
                           chunkwise_recurrents=[True, True, False, False],
                           layerscales=[False, False, True, True])
#: The smallest RMT of both MaSA forms (one block per stage, 16 channels from stage 2 on): the
#: backbone of the toy classifier that mmengine's Runner trains in a second
#: (helpers/toy_runner.py, whose ``nn.Linear(16, 3)`` head reads its last width), and the
#: model of the bad-file tests' checkpoints.
RMT_TOY_CLASSIFIER = dict(embed_dims=[8, 16, 16, 16], depths=[1, 1, 1, 1],
                          num_heads=[2, 2, 2, 2], init_values=[2, 2, 2, 2],
                          heads_ranges=[4, 4, 6, 6], mlp_ratios=[2, 2, 2, 2],
                          chunkwise_recurrents=[True, True, False, False],
                          layerscales=[False, False, True, True])


def tiny_arch(cls) -> dict:
    """A copy of ``cls``'s tiny arch (models and tests never share the dicts)."""
    return copy.deepcopy(TINY_ARCHS[cls])


def build_tiny(cls, **kwargs):
    """``cls`` with its tiny arch."""
    return cls(tiny_arch(cls), **kwargs)
