"""The pipeline of passes from imported graph to a graph ready for emission.

Each pass is one module with one `run(graph)` function that returns the (possibly rewritten)
graph, so that each can be tested alone.
"""

from pure_model_codegen.passes import (check_ops, eliminate_dead, fold_batchnorm, fuse_activations,
                                       fuse_elementwise, fuse_residual, identity_views, propagate,
                                       runtime_quantization)

PIPELINE = (
    check_ops,  # every op is one we implement, before any work is done
    propagate,  # shapes and dtypes of every tensor; constant subgraphs folded
    eliminate_dead,  # nodes whose results nobody reads
    identity_views,  # Slice and Expand that keep every element in place
    fold_batchnorm,  # BatchNormalization into the Conv before it
    fuse_residual,  # Add(Conv(x), skip) into the Conv
    runtime_quantization,  # Sigmoid as ONNX Runtime computes it, in models that quantize at run time
    fuse_activations,  # Relu/Clip/Sigmoid into the Conv or Gemm that produces their input
    fuse_elementwise,  # chains of elementwise nodes into one loop
)


def run_all(graph):
    for step in PIPELINE:
        graph = step.run(graph)
    return graph
