"""How much memory one block of intermediate values may take in each kernel, side by side.

Every kernel that splits its work does so to keep some tensor from growing with the square of
the sequence (attention) or with the whole map (the FFN's hidden layer); each budget is counted
in elements (float32: 4 bytes each) and was chosen by ``tools/benchmark.py`` measurements
(docs/benchmarks.md). The kernel modules import the budget they use, and the tests shrink it
there to force many blocks at small sizes.
"""

#: ``blocked`` kernels (:mod:`.masa_blocked`): logits per block, forward and backward (512K
#: floats = 2 MB, one L2 cache: faster than larger blocks for attention forward+backward on CPU).
BLOCK_ELEMS = 1 << 19

#: Full attention with a materialised bias (:mod:`.masa`): split into query blocks once
#: ``heads * L * L`` exceeds this many elements (16M floats = 64 MB); each block's bias then
#: holds about this many.
FULL_BIAS_BLOCK_ELEMS = 1 << 24

#: The export form (:mod:`.masa_export`): logits per attention block at the planned size (4M
#: floats = 16 MB; unblocked, stage 3 of RMT-T at 800x1344 holds 8 heads x 4200^2 = 141M).
#: Each block is its own run of graph nodes, so fewer blocks make a smaller graph; much larger
#: ones made onnxruntime slower than PyTorch eager and larger in memory.
EXPORT_BLOCK_ELEMS = 1 << 22

#: The FFN without autograd (:mod:`.speedups`): hidden-map elements per chunk of image rows (4M
#: floats = 16 MB).
FFN_CHUNK_ELEMS = 1 << 22
