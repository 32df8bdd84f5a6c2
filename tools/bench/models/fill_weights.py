"""Puts seeded random weights back into a model graph whose large initializers were stored as
statistics only (see make_models.py): `fill_weights_main --graph=g.onnx --out=m.onnx`.

An initializer to fill has dims, no data, and a doc_string `{"pure_model_bench_fill": {"mean":
M, "std": S}}`. It gets float32 values drawn from N(M, S^2) by numpy's PCG64 generator, seeded
from the initializer's name (so the values do not depend on the order of the initializers).
Same graph, same numpy: byte-identical model.
"""

import json
import zlib

import numpy as np
import onnx

MARKER = "pure_model_bench_fill"


def set_statistics(init, mean, std):
    """Turns `init` into a fill marker: keeps name, type and dims, drops the data."""
    for field in ("raw_data", "float_data"):
        init.ClearField(field)
    init.doc_string = json.dumps({MARKER: {"mean": mean, "std": std}}, sort_keys=True)


def fill(graph_model, seed=0):
    """Returns a copy of `graph_model` with every marked initializer filled."""
    model = onnx.ModelProto()
    model.CopyFrom(graph_model)
    for init in model.graph.initializer:
        if not init.doc_string.startswith("{"):
            continue
        stats = json.loads(init.doc_string).get(MARKER)
        if stats is None:
            continue
        if init.data_type != onnx.TensorProto.FLOAT:
            raise ValueError(f"initializer {init.name!r}: only float32 initializers can be filled")
        rng = np.random.default_rng([seed, zlib.crc32(init.name.encode("utf-8"))])
        count = int(np.prod(init.dims, dtype=np.int64))
        values = rng.standard_normal(count, dtype=np.float32) * np.float32(stats["std"]) + np.float32(stats["mean"])
        init.raw_data = values.astype("<f4").tobytes()
        init.doc_string = ""
    onnx.checker.check_model(model)
    return model
