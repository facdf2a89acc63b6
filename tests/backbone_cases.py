"""One tiny arch per backbone family, for the tests that exercise every family alike."""
from rmt_mm.models import RMT, ResT, ResTV2

#: Both MaSA forms (axial stages 1-2, full attention 3-4) and layer scale (stages 3-4).
RMT_MINI = dict(embed_dims=[16, 32, 64, 96], depths=[1, 2, 2, 1], num_heads=[2, 2, 4, 4],
                init_values=[2, 2, 2, 2], heads_ranges=[4, 4, 6, 6], mlp_ratios=[3, 3, 3, 3],
                chunkwise_recurrents=[True, True, False, False],
                layerscales=[False, False, True, True])
#: The archs of the upstream-produced ResT fixtures (tests/test_rest.py checks them).
REST_TINY = dict(embed_dims=[16, 32, 64, 128], depths=[1, 1, 2, 1], num_heads=[1, 2, 4, 8],
                 mlp_ratios=[4, 4, 4, 4], sr_ratios=[8, 4, 2, 1])
RESTV2_TINY = dict(embed_dims=[16, 32, 64, 128], depths=[1, 1, 2, 1], num_heads=[1, 2, 4, 8],
                   sr_ratios=[8, 4, 2, 1])
TINY_ARCHS = {RMT: RMT_MINI, ResT: REST_TINY, ResTV2: RESTV2_TINY}


def build_tiny(cls, **kwargs):
    """``cls`` with its tiny arch (a copy: models never share the dicts)."""
    return cls(dict(TINY_ARCHS[cls]), **kwargs)
