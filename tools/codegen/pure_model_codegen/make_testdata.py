"""Seeded random inputs for a model and the outputs onnx's reference evaluator gives for them.

    python3 -m pure_model_codegen.make_testdata --model=m.onnx --input_shape=x=1,3,32,32 \
        [--input_value=sr=16000] --seed=0 --out_dir=DIR

writes DIR/inputs/<input>.npy and DIR/expected/<output>.npy (names sanitised as the run tool
does). Inputs bound with --input_value get their bound values and no file: the generated model
does not take them. Shapes and dtypes come from the same frontend as the generator, so the two agree on what
the model's inputs are.
"""

import os
import re
import sys

import numpy as np
from absl import app, flags

from pure_model_codegen import frontend, ir
from pure_model_codegen.errors import CodegenError

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "The ONNX model file.")
flags.DEFINE_multi_string("input_shape", [], "NAME=D0,D1,... binds the dimensions of input NAME.")
flags.DEFINE_multi_string("input_value", [], "NAME=V0,V1,... binds input NAME to these values, as the generator does.")
flags.DEFINE_integer("seed", 0, "Seed of the random inputs.")
flags.DEFINE_string("out_dir", None, "Directory to write inputs/ and expected/ into.")


def file_name(tensor_name):
    return re.sub(r"[^A-Za-z0-9_.-]", "_", tensor_name) + ".npy"


def random_inputs(graph, seed):
    rng = np.random.default_rng(seed)
    values = {}
    for name in graph.inputs:
        tensor = graph.tensor(name)
        np_type = ir.numpy_type(tensor.dtype)
        if tensor.dtype in (1, 11) + ir.STORAGE_FLOATS:
            values[name] = rng.uniform(-1.0, 1.0, tensor.shape).astype(np_type)
        elif np_type == np.bool_:
            values[name] = rng.integers(0, 2, tensor.shape).astype(np.bool_)
        else:
            values[name] = rng.integers(0, 4, tensor.shape).astype(np_type)
    return values


def reference_outputs(model_path, inputs):
    from onnx.reference import ReferenceEvaluator

    evaluator = ReferenceEvaluator(model_path)
    return dict(zip(evaluator.output_names, evaluator.run(None, inputs)))


def main(argv):
    del argv
    try:
        graph = frontend.import_model(FLAGS.model, frontend.parse_input_shapes(FLAGS.input_shape),
                                      frontend.parse_input_values(FLAGS.input_value))
    except CodegenError as e:
        print(f"make_testdata: error: {e}", file=sys.stderr)
        return 1
    inputs = random_inputs(graph, FLAGS.seed)
    bound = {name: tensor.value for name, tensor in graph.bound_inputs.items()}
    outputs = reference_outputs(FLAGS.model, {**inputs, **bound})
    for sub, values in (("inputs", inputs), ("expected", outputs)):
        os.makedirs(os.path.join(FLAGS.out_dir, sub), exist_ok=True)
        for name, value in sorted(values.items()):
            # order="C", not np.ascontiguousarray: that one makes a scalar (0-d) input shape [1].
            np.save(os.path.join(FLAGS.out_dir, sub, file_name(name)), np.asarray(value, order="C"))
    return 0


if __name__ == "__main__":
    app.run(main)
