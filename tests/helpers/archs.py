"""The tests' tiny backbone archs: one per family, each the arch of that family's upstream parity
fixtures, so that one arch serves the fixture tests and every test that only needs a small
model."""
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


def tiny_arch(cls) -> dict:
    """A copy of ``cls``'s tiny arch (models and tests never share the dicts)."""
    return copy.deepcopy(TINY_ARCHS[cls])


def build_tiny(cls, **kwargs):
    """``cls`` with its tiny arch."""
    return cls(tiny_arch(cls), **kwargs)
