"""Command line of the generator, as the PureModelCodegen Bazel action runs it.

    python3 -m pure_model_codegen --model=m.onnx --input_shape=x=1,3,224,224 [--input_value=sr=16000] --cpu=x86_64 \
        --namespace=examples::cnn --class_name=Cnn --header_include=examples/cnn/cnn.h \
        --out_header=... --out_source=... --out_weights=m_weights.bin --out_weights_asm=m_weights.S \
        --out_descriptor=... [--profile_steps] [--obfuscate [--obfuscation_key=STRING]]

Compile the source and the assembler file (`g++ -c m_weights.S`) into the library; the assembler
reads the weights blob at --weights_path (default: --out_weights), relative to where it runs.
--out_weights and --out_weights_asm default to <out_source stem>_weights.bin and .S.

Bad input ends the process with one line on stderr naming the file, node and problem, and
exit status 1; never a traceback. Should the generator itself fail on some model in a way it does
not anticipate, that too is one line (an internal error, to be reported);
PURE_MODEL_CODEGEN_DEBUG=1 prints the traceback as well.
"""

import json
import os
import sys
import traceback

from absl import app, flags

from pure_model_codegen import emit, frontend, passes, report
from pure_model_codegen import obfuscate as obfuscation
from pure_model_codegen.errors import CodegenError, one_line

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "The ONNX model file.")
flags.DEFINE_multi_string("input_shape", [], "NAME=D0,D1,... binds the dimensions of input NAME.")
flags.DEFINE_multi_string("output_shape", [], "NAME=D0,D1,... replaces the shape the model declares for output NAME "
                          "(for models whose graph computes another shape than they declare; checked).")
flags.DEFINE_multi_string("input_value", [], "NAME=V0,V1,... binds input NAME to these values at generation time: "
                          "it becomes a constant and leaves Run()'s parameters.")
flags.DEFINE_enum("cpu", "generic", ["generic", "x86_64", "aarch64"], "The target CPU to specialise for.")
flags.DEFINE_string("namespace", "pure_model", "C++ namespace of the generated class.")
flags.DEFINE_string("class_name", "Model", "Name of the generated C++ class.")
flags.DEFINE_string("header_include", None, "How the generated sources #include the header.")
flags.DEFINE_string("model_label", None, "What the generated files say they come from (default: --model).")
flags.DEFINE_string("out_header", None, "Where to write the header.")
flags.DEFINE_string("out_source", None, "Where to write the implementation.")
flags.DEFINE_string("out_weights", None, "Where to write the weights blob (default: next to --out_source, "
                    "<stem>_weights.bin).")
flags.DEFINE_string("out_weights_asm", None, "Where to write the assembler file that embeds the weights blob "
                    "(default: next to --out_source, <stem>_weights.S).")
flags.DEFINE_string("weights_path", None, "The blob's path as the assembler sees it, from the compiler's working "
                    "directory (default: --out_weights).")
flags.DEFINE_bool("obfuscate", False, "Mask and shuffle the weights blob (see obfuscate.py) so that it holds no "
                  "weight tensor as it is; the kernels unmask each value as they load it.")
flags.DEFINE_string("obfuscation_key", "", "With --obfuscate: a string mixed into the key (which otherwise comes from "
                    "the model's bytes alone).")
flags.DEFINE_string("out_descriptor", None, "Where to write the harness descriptor (optional).")
flags.DEFINE_bool("profile_steps", False, "Time each step of Run() and name the steps in the descriptor, for the "
                  "<name>_profile tool; the plain library is generated without it.")
flags.DEFINE_string("out_report", None, "Where to write the JSON build report (optional); also summarised on stderr.")


def generate_files(model_path, input_shapes, *, cpu, namespace, class_name, header_include, model_label,
                   weights_path="weights.bin", profile_steps=False, input_values=None, obfuscate=False,
                   obfuscation_key="", output_shapes=None):
    """The generated files by kind (see emit.generate); `weights_path` is the .incbin path."""
    try:
        graph = frontend.import_model(model_path, input_shapes, input_values, output_shapes)
        graph = passes.run_all(graph)
        key = obfuscation.model_key(model_path, obfuscation_key) if obfuscate else None
        return emit.generate(graph, namespace=namespace, class_name=class_name, header_include=header_include,
                             model_label=model_label, cpu=cpu, weights_path=weights_path,
                             profile_steps=profile_steps, obfuscation_key=key)
    except CodegenError as e:
        # Name the model as the user wrote it (a Bazel label), not as a path in a sandbox.
        e.model_path = model_label
        raise e from None


def _write(path, text):
    # Write-then-rename so an interrupted action never leaves half a file behind.
    tmp = path + ".tmp"
    if isinstance(text, bytes):
        with open(tmp, "wb") as f:
            f.write(text)
    else:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
    os.replace(tmp, path)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    for required in ("model", "header_include", "out_header", "out_source"):
        if not getattr(FLAGS, required):
            raise app.UsageError(f"--{required} is required")
    stem = os.path.splitext(FLAGS.out_source)[0]
    out_weights = FLAGS.out_weights or stem + "_weights.bin"
    out_weights_asm = FLAGS.out_weights_asm or stem + "_weights.S"
    try:
        files = generate_files(
            FLAGS.model, frontend.parse_input_shapes(FLAGS.input_shape), cpu=FLAGS.cpu, namespace=FLAGS.namespace,
            class_name=FLAGS.class_name, header_include=FLAGS.header_include,
            model_label=FLAGS.model_label or FLAGS.model, weights_path=FLAGS.weights_path or out_weights,
            profile_steps=FLAGS.profile_steps, input_values=frontend.parse_input_values(FLAGS.input_value),
            obfuscate=FLAGS.obfuscate, obfuscation_key=FLAGS.obfuscation_key,
            output_shapes=frontend.parse_output_shapes(FLAGS.output_shape))
    except CodegenError as e:
        if e.model_path is None:
            e.model_path = FLAGS.model_label or FLAGS.model
        print(f"pure_model_codegen: error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001  the safety net: a bug, still reported as one line
        return _internal_error(FLAGS.model_label or FLAGS.model, e)
    outputs = [(FLAGS.out_header, "header"), (FLAGS.out_source, "source"), (out_weights, "weights"),
               (out_weights_asm, "weights_asm")]
    if FLAGS.out_descriptor:
        outputs.append((FLAGS.out_descriptor, "descriptor"))
    if FLAGS.out_report:
        outputs.append((FLAGS.out_report, "report"))
    for path, kind in outputs:
        try:
            _write(path, files[kind])
        except OSError as e:
            print(one_line(f"pure_model_codegen: error: cannot write {path}: {e.strerror or e}"), file=sys.stderr)
            return 1
    if FLAGS.out_report:
        print("pure_model: " + report.summary_line(json.loads(files["report"])), file=sys.stderr)
    return 0


def _internal_error(label, error):
    """Reports an exception the generator did not anticipate: one line, exit status 1."""
    if os.environ.get("PURE_MODEL_CODEGEN_DEBUG", "") not in ("", "0"):
        traceback.print_exc()
    if isinstance(error, MemoryError):
        message = f"out of memory while generating {label} (the model is too large for this machine)"
    else:
        detail = str(error) if len(str(error)) <= 500 else str(error)[:500] + "..."
        message = (f"internal error while generating {label}: {type(error).__name__}: {detail} (a bug in the "
                   "generator: please report it with the model; PURE_MODEL_CODEGEN_DEBUG=1 shows the traceback)")
    print(one_line("pure_model_codegen: error: " + message), file=sys.stderr)
    return 1


def run():
    app.run(main)
