"""Runs the ONNX backend test cases through the generator, compiles and runs what it accepts.

    tools/bazel run //tests/conformance:run_conformance            # all cases; rewrites results.txt
    tools/bazel run //tests/conformance:run_conformance -- --filter='^node/test_relu'
    python3 tests/conformance/run_conformance.py                   # the same outside Bazel

Every case of onnx's backend test suite of the kinds `node`, `simple`, `pytorch-converted` and
`pytorch-operator` gets one status:

  pass                        every output of every test data set matches the expected one
  pass bound-input:<names>    the same, once those graph inputs were bound to their test data
                              values at generation time after a dynamic-data refusal
  unsupported <reason>        the generator refused the model with a CodegenError (the expected
                              outcome for what it does not implement); <reason> is a category
                              such as unsupported-op:ImageDecoder, unsupported-dtype:int64,
                              dynamic-data:Reshape or other:<short>
  fail:mismatch <reason>      wrong values, shape, dtype or input signature
  fail:compile-error <reason> the generated C++ does not compile
  fail:crash <reason>         the compiled model died (signal or exit status)
  fail:timeout <reason>       code generation or the run took longer than allowed
  fail:codegen-exception <r>  the generator raised something other than a CodegenError (a bug)
  fail:harness <reason>       the case itself could not be loaded or fed (not the generator's fault)

How: worker processes (-j) generate C++ for each case, binding the input shapes from its test
data; the generated models are then compiled in batches, each model in its own namespace, into
one program per batch with a generic main (driver.cc) that runs one model on raw input files.
Each test data set runs in its own process, with a timeout, and is compared with the expected
outputs at the suite's tolerances (rtol 1e-3, atol 1e-7 unless the case says otherwise; exact
for integers and bools; NaN equals NaN).

`--check results.txt` re-runs only the cases that file lists as `pass` and exits 1, naming them,
if any of them no longer passes: the regression test //tests/conformance:conformance_test.
"""

import argparse
import collections
import dataclasses
import glob
import multiprocessing
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
# In a checkout and in Bazel's runfiles alike: tests/conformance/ -> the repository root.
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))


def _bootstrap_imports():
    """Finds the generator next to this file when it is not importable already (outside Bazel).

    Under Bazel, and with PYTHONPATH=<the @pure_model_python_deps site dir>, the locked wheels are
    on sys.path: then the interpreter's own site-packages are dropped, so that for example the
    provisioned root's Debian onnx 1.20 cannot stand in for the locked onnx.
    """
    try:
        import pure_model_codegen  # noqa: F401
    except ImportError:
        sys.path.insert(0, os.path.join(REPO, "tools", "codegen"))
    if any("pure_model_python_deps" in p for p in sys.path):
        from pure_model_codegen import hermetic

        hermetic.drop_system_site_packages()


_bootstrap_imports()

import ml_dtypes  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import numpy_helper  # noqa: E402

from pure_model_codegen import cli  # noqa: E402
from pure_model_codegen.errors import CodegenError  # noqa: E402

KINDS = ("node", "simple", "pytorch-converted", "pytorch-operator")
RESULTS_FILE = os.path.join("tests", "conformance", "results.txt")
REGENERATE = "tools/bazel run //tests/conformance:run_conformance"
CXXFLAGS = ["-std=c++17", "-O1"]

# ONNX element type numbers (as the descriptor reports them) -> numpy dtype.
NUMPY_DTYPES = {
    1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32, 7: np.int64, 9: np.bool_,
    10: np.float16, 11: np.float64, 12: np.uint32, 13: np.uint64, 16: ml_dtypes.bfloat16,
    17: ml_dtypes.float8_e4m3fn, 18: ml_dtypes.float8_e4m3fnuz, 19: ml_dtypes.float8_e5m2,
    20: ml_dtypes.float8_e5m2fnuz, 21: ml_dtypes.uint4, 22: ml_dtypes.int4, 23: ml_dtypes.float4_e2m1fn,
    25: ml_dtypes.uint2, 26: ml_dtypes.int2,
}
# ml_dtypes' float types, which numpy reports as kind 'V': compared as floats.
_ML_FLOATS = {np.dtype(t) for t in (ml_dtypes.bfloat16, ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e4m3fnuz,
                                    ml_dtypes.float8_e5m2, ml_dtypes.float8_e5m2fnuz, ml_dtypes.float4_e2m1fn)}


# ---------------------------------------------------------------------------------------------
# The cases.


@dataclasses.dataclass
class Case:
    kind: str
    name: str
    rtol: float
    atol: float
    model: object = None  # an in-memory ModelProto (node cases) ...
    model_dir: str = None  # ... or a directory with model.onnx and test_data_set_*/
    data_sets: list = None  # node cases: [(inputs, outputs)]

    @property
    def id(self):
        return f"{self.kind}/{self.name}"


def load_cases(kinds):
    from onnx.backend.test import loader

    cases = []
    for kind in kinds:
        if kind == "node":
            # The node cases are built when their modules are first imported, many from
            # np.random: seed it so that every run sees the same data.
            np.random.seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tests = loader.load_model_tests(kind=kind)
        for t in tests:
            # A case whose model would have to be downloaded (none of these kinds has one) is kept:
            # it shows up as fail:harness, never skipped silently.
            cases.append(Case(kind, t.name, t.rtol, t.atol, t.model, t.model_dir, t.data_sets))
    cases.sort(key=lambda c: c.id)
    ids = [c.id for c in cases]
    if len(set(ids)) != len(ids):
        raise SystemExit("run_conformance: duplicate case names in the suite")
    return cases


class NonTensor:
    """A test value that is not a tensor (a sequence, an optional): the generator has no such I/O."""

    def __init__(self, what):
        self.what = what


def _to_value(value):
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, np.generic):
        return np.asarray(value)
    return NonTensor(type(value).__name__)


def _load_pb(path, type_proto):
    with open(path, "rb") as f:
        data = f.read()
    if type_proto.HasField("tensor_type"):
        tensor = onnx.TensorProto()
        tensor.ParseFromString(data)
        return numpy_helper.to_array(tensor)
    if type_proto.HasField("sequence_type"):
        return NonTensor("sequence")
    if type_proto.HasField("optional_type"):
        return NonTensor("optional")
    return NonTensor("other")


def _numbered(directory, prefix):
    found = [os.path.basename(p) for p in glob.glob(os.path.join(directory, prefix + "_*.pb"))]
    return sorted(int(re.fullmatch(prefix + r"_(\d+)\.pb", n).group(1)) for n in found)


def case_data(case):
    """(model proto, model path or None, [(inputs, outputs)]) with numpy arrays or NonTensor."""
    if case.model is not None:
        model = case.model
        sets = [([_to_value(v) for v in ins], [_to_value(v) for v in outs]) for ins, outs in case.data_sets]
        return model, None, sets
    if case.model_dir is None:
        raise FileNotFoundError("the case has no local model (it would have to be downloaded)")
    path = os.path.join(case.model_dir, "model.onnx")
    model = onnx.load(path)
    sets = []
    for d in sorted(glob.glob(os.path.join(case.model_dir, "test_data_set_*"))):
        ins = [_load_pb(os.path.join(d, f"input_{i}.pb"), model.graph.input[i].type) for i in _numbered(d, "input")]
        outs = [_load_pb(os.path.join(d, f"output_{i}.pb"), model.graph.output[i].type)
                for i in _numbered(d, "output")]
        sets.append((ins, outs))
    return model, path, sets


# ---------------------------------------------------------------------------------------------
# Reasons: short, stable categories, so that results.txt diffs stay readable and totals add up.


def _slug(text, words=4):
    text = re.sub(r"'[^']*'|\"[^\"]*\"|\[[^\]]*\]|\([^)]*\)|-?\d+(\.\d+)?", " ", text)
    parts = re.findall(r"[A-Za-z_]+", text.lower())
    return "-".join(parts[:words]) or "unknown"


def classify_codegen_error(error, model=None):
    """The reason for an `unsupported` case, from the generator's CodegenError (and the model)."""
    message = error.message
    node = error.node
    op = f"{node.domain + '.' if node is not None and node.domain else ''}{node.op_type}" if node is not None else None
    if message.startswith("unsupported operator"):
        return f"unsupported-op:{op}"
    m = re.search(r"unsupported element type (\S+)", message)
    if m:
        return f"unsupported-dtype:{m.group(1).lower().replace('tensorproto.', '')}"
    m = re.search(r" is (\w+); this op supports", message)
    if m:
        return f"unsupported-dtype:{op}:{m.group(1)}"
    if re.search(r"inputs have different element types|indices must be int32 or int64|cast to element type",
                 message):
        return f"unsupported-dtype:{op}"
    if ("depends on the model's inputs" in message or "depend on the model's inputs" in message
            or "must be a constant" in message):
        return f"dynamic-data:{op}"
    if "is not a tensor" in message:
        return "non-tensor-io"
    m = re.search(r"imports ai.onnx opset (\d+)", message)
    if m:
        ops = "+".join(sorted({n.op_type for n in model.graph.node})[:3]) if model is not None else ""
        return f"unsupported-opset:{m.group(1)}" + (f"({ops})" if ops else "")
    if message.startswith("invalid ONNX model"):
        return "invalid-model"
    if "not supported" in message or message.startswith("only "):
        return f"unsupported-feature:{op}" if op else "unsupported-feature"
    return f"other:{op + ':' if op else ''}{_slug(message)}"


def category(status, reason):
    """What totals group by: `unsupported-op`, `dynamic-data`, ... for unsupported; the status else."""
    if status == "unsupported":
        return reason.split(":", 1)[0]
    return status


# ---------------------------------------------------------------------------------------------
# Phase 1 (in worker processes): generate C++ for one case and write its inputs and expectations.

# Set in the parent before the worker pool forks, so workers inherit them without pickling.
_CASES = []
_OPTIONS = None


class _CodegenTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise _CodegenTimeout()


def _generate(model_path, shapes, namespace, header_include, weights_path, bound=None):
    from pure_model_codegen import frontend

    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, _OPTIONS.codegen_timeout)
    try:
        return cli.generate_files(model_path, shapes, cpu="generic", namespace=namespace, class_name="Net",
                                  header_include=header_include, model_label=model_path, weights_path=weights_path,
                                  input_values={n: frontend.value_texts(v) for n, v in (bound or {}).items()})
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _same_in_every_set(sets, position):
    """The value of graph input `position` when every test data set gives it the same one, else None."""
    values = [ins[position] if position < len(ins) else None for ins, _ in sets]
    first = values[0]
    if not isinstance(first, np.ndarray):
        return None
    for value in values[1:]:
        if (not isinstance(value, np.ndarray) or value.dtype != first.dtype or value.shape != first.shape
                or value.tobytes() != first.tobytes()):
            return None
    return first


def _input_to_bind(error, model, sets, bound):
    """(name, value) of the graph input to bind after a dynamic-data refusal, or None.

    Candidates are the graph inputs the refused node reads, directly or through other nodes, that
    have the same value in every test data set. One the message names comes first, then
    configuration rather than data: integer and bool inputs before float ones, then the smallest,
    so a reduction's `axes` is bound and its data is not."""
    node = error.node
    if node is None:
        return None
    reads = {}  # tensor -> what its producer reads, through the subgraphs of control flow too

    def collect(graph):
        names = set()
        for proto in graph.node:
            inputs = {n for n in proto.input if n}
            for attr in proto.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    inputs |= collect(attr.g)
            for out in proto.output:
                reads[out] = inputs
            names |= inputs
        return names

    collect(model.graph)
    initializers = {init.name for init in model.graph.initializer}
    positions = {vi.name: i for i, vi in enumerate(model.graph.input) if vi.name not in initializers}
    known = set(reads) | set(positions)

    def original(name):
        # Steps inlined from a subgraph read "<node>/<branch or iteration>/<name>".
        if name in known:
            return name
        suffixes = [n for n in known if name.endswith("/" + n)]
        return max(suffixes, key=len) if suffixes else name

    seen, stack, candidates = set(), [original(n) for n in node.inputs if n], []
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in positions and name not in bound:
            value = _same_in_every_set(sets, positions[name])
            if value is not None:
                named = f"'{name}'" in error.message
                candidates.append((not named, value.dtype.kind in "fc", value.size, name, value))
        elif name in reads:
            stack.extend(reads[name])
    if not candidates:
        return None
    *_, name, value = min(candidates, key=lambda c: c[:4])
    return name, value


def prepare_case(index):
    """Returns (index, result or None, [unit]); a unit is one generated model, ready to compile."""
    case = _CASES[index]
    work = os.path.join(_OPTIONS.workdir, f"c{index:05d}")
    os.makedirs(work, exist_ok=True)
    np.seterr(all="ignore")
    warnings.simplefilter("ignore")
    try:
        model, model_path, sets = case_data(case)
        if model_path is None:
            model_path = os.path.join(work, "model.onnx")
            onnx.save(model, model_path)
    except Exception as e:  # noqa: BLE001  (a broken case must not stop the run)
        return index, ("fail:harness", f"cannot load the case: {type(e).__name__}"), []
    if not sets:
        return index, ("fail:harness", "the case has no test data"), []

    initializers = {init.name for init in model.graph.initializer}
    # The generator takes the graph inputs that are not initializers, in order: so do the runs.
    variants = {}  # input shapes -> unit
    units = []
    # Graph inputs bound at generation time after a dynamic-data refusal (see _input_to_bind).
    bound = {}
    for number, (ins, outs) in enumerate(sets):
        if len(ins) > len(model.graph.input):
            return index, ("fail:harness", f"{len(ins)} inputs for {len(model.graph.input)} graph inputs"), []
        feeds = [(vi.name, value) for vi, value in zip(model.graph.input, ins) if vi.name not in initializers]
        shapes = {name: tuple(value.shape) for name, value in feeds if isinstance(value, np.ndarray)}
        key = tuple(sorted(shapes.items()))
        if key not in variants:
            unit_name = f"c{index:05d}v{len(variants)}"
            unit_dir = os.path.join(work, unit_name)
            os.makedirs(unit_dir, exist_ok=True)
            header = os.path.relpath(os.path.join(unit_dir, "model.h"), _OPTIONS.workdir)
            refusal = None
            try:
                while True:
                    try:
                        files = _generate(model_path, shapes, unit_name, header,
                                           os.path.join(unit_dir, "model_weights.bin"), bound)
                        break
                    except CodegenError as e:
                        reason = classify_codegen_error(e, model)
                        refusal = refusal or reason
                        binding = _input_to_bind(e, model, sets, bound) if category(
                            "unsupported", reason) == "dynamic-data" else None
                        if binding is None:
                            # Refused even with inputs bound: the case stays refused for what it
                            # was refused for first.
                            return index, ("unsupported", refusal), []
                        bound[binding[0]] = binding[1]
            except _CodegenTimeout:
                return index, ("fail:timeout", f"code generation took over {_OPTIONS.codegen_timeout:g} s"), []
            except RecursionError:
                return index, ("fail:codegen-exception", "RecursionError"), []
            except Exception as e:  # noqa: BLE001  (the generator's bug, reported per case)
                return index, ("fail:codegen-exception", f"{type(e).__name__}: {_slug(str(e), 6)}"), []
            for kind, name in (("header", "model.h"), ("source", "model.cc"), ("descriptor", "model.d.cc"),
                               ("weights_asm", "model_weights.S"), ("weights", "model_weights.bin")):
                with open(os.path.join(unit_dir, name), "wb") as f:
                    f.write(files[kind] if kind == "weights" else files[kind].encode("utf-8"))
            variants[key] = dict(case=index, name=unit_name, dir=unit_dir, runs=[],
                                 source_bytes=len(files["source"]), bound=sorted(bound))
            units.append(variants[key])
        unit = variants[key]
        feeds = [(name, value) for name, value in feeds if name not in unit["bound"]]
        run_dir = os.path.join(unit["dir"], f"set{number}")
        os.makedirs(run_dir, exist_ok=True)
        for i, (_, value) in enumerate(feeds):
            if isinstance(value, np.ndarray):
                with open(os.path.join(run_dir, f"input_{i}.bin"), "wb") as f:
                    f.write(np.ascontiguousarray(value).tobytes())
        with open(os.path.join(run_dir, "expected.pkl"), "wb") as f:
            pickle.dump(dict(inputs=feeds, outputs=outs, output_names=[o.name for o in model.graph.output]), f)
        unit["runs"].append(run_dir)
    return index, None, units


# ---------------------------------------------------------------------------------------------
# Phase 2 (in worker processes): compile a batch of units into one program, run and compare.


def _compiler():
    return os.environ.get("CXX") or shutil.which("g++") or "c++"


def _cxxflags():
    return CXXFLAGS + _OPTIONS.cxxflags.split()


def _include_flags():
    return ["-I", _OPTIONS.workdir, "-I", os.path.join(REPO, "runtime", "include"), "-I", REPO]


def _batch_source(units):
    lines = ["// Generated by run_conformance.py: several models, one program.",
             '#include "tools/harness/model_descriptor.h"', ""]
    for unit in units:
        rel = os.path.relpath(unit["dir"], _OPTIONS.workdir)
        name = unit["name"]
        lines += [
            f'#include "{rel}/model.cc"',
            # Each descriptor defines pure_model_harness::Model(); nested in the unit's own
            # namespace, which sees the harness types through a using-directive, they coexist.
            f"namespace {name} {{ namespace pure_model_harness {{ using namespace ::pure_model_harness; }} }}",
            f"namespace {name} {{",
            f'#include "{rel}/model.d.cc"',
            f"}}  // namespace {name}",
            "",
        ]
    lines += [
        "namespace conformance {",
        "using Descriptor = const pure_model_harness::ModelDescriptor& (*)();",
        "extern const Descriptor kUnits[];",
        "const Descriptor kUnits[] = {",
        *[f"    &{unit['name']}::pure_model_harness::Model," for unit in units],
        "};",
        "extern const int kNumUnits;",
        f"const int kNumUnits = {len(units)};",
        "}  // namespace conformance",
        "",
    ]
    return "\n".join(lines)


def _first_error(stderr):
    for line in stderr.splitlines():
        m = re.search(r"\berror: (.*)", line)
        if m:
            return _slug(m.group(1), 8)
    return "no error message"


def _compile(units, name):
    """Compiles `units` into one program; returns (binary or None, stderr)."""
    source = os.path.join(_OPTIONS.workdir, f"{name}.cc")
    with open(source, "w", encoding="utf-8") as f:
        f.write(_batch_source(units))
    obj = source[:-3] + ".o"
    binary = source[:-3]
    try:
        result = subprocess.run([_compiler(), *_cxxflags(), *_include_flags(), "-c", source, "-o", obj],
                                capture_output=True, text=True, timeout=_OPTIONS.compile_timeout)
        if result.returncode != 0:
            return None, result.stderr
        # Each unit's weights: its assembler file, assembled as part of the link.
        weights = [os.path.join(unit["dir"], "model_weights.S") for unit in units]
        result = subprocess.run([_compiler(), *_cxxflags(), obj, *weights, _OPTIONS.driver_object, "-o", binary],
                                capture_output=True, text=True, timeout=_OPTIONS.compile_timeout)
    except subprocess.TimeoutExpired:
        return None, f"error: compiling took over {_OPTIONS.compile_timeout} s"
    finally:
        if os.path.exists(obj):
            os.remove(obj)
    return (binary if result.returncode == 0 else None), result.stderr


def _read_signature(run_dir):
    entries = {"input": [], "output": []}
    with open(os.path.join(run_dir, "signature.txt")) as f:
        for line in f:
            kind, dtype, rank, *dims = line.split()
            entries[kind].append((int(dtype), tuple(int(d) for d in dims[: int(rank)])))
    return entries


def _dtype_name(dtype):
    return np.dtype(dtype).name if dtype is not None else "unknown"


def compare(expected, got, rtol, atol):
    """None when `got` matches `expected` at the suite's tolerances, else what is wrong."""
    if expected.dtype.kind in "fc" or expected.dtype in _ML_FLOATS:
        e = expected.astype(np.float64)
        g = got.astype(np.float64)
        same = (e == g) | (np.isnan(e) & np.isnan(g))
        with np.errstate(invalid="ignore", over="ignore"):
            close = np.abs(g - e) <= atol + rtol * np.abs(e)
        ok = same | (close & np.isfinite(e) & np.isfinite(g))
    else:
        ok = expected == got
    if bool(np.all(ok)):
        return None
    bad = int(np.size(ok) - np.count_nonzero(ok))
    return f"{bad} of {np.size(ok)} values differ"


def _mismatch_detail(expected, got):
    """For -v: the worst element of a mismatch."""
    with np.errstate(all="ignore"):
        err = np.abs(got.astype(np.float64) - expected.astype(np.float64)).reshape(-1)
    err[np.isnan(err)] = np.inf
    worst = int(np.argmax(err)) if err.size else 0
    return (f"worst at flat index {worst}: got {got.reshape(-1)[worst].item()!r}, "
            f"expected {expected.reshape(-1)[worst].item()!r}")


def check_run(run_dir, rtol, atol):
    """(status, reason) of one test data set, after the program has run on it."""
    with open(os.path.join(run_dir, "expected.pkl"), "rb") as f:
        expected = pickle.load(f)
    signature = _read_signature(run_dir)
    feeds = expected["inputs"]
    if len(signature["input"]) != len(feeds):
        return "fail:mismatch", f"the model takes {len(signature['input'])} inputs, the test gives {len(feeds)}"
    for (name, value), (dtype, shape) in zip(feeds, signature["input"]):
        if isinstance(value, NonTensor):
            return "fail:mismatch", f"input '{name}' is a {value.what}"
        if NUMPY_DTYPES.get(dtype) is None or np.dtype(NUMPY_DTYPES[dtype]) != value.dtype or shape != value.shape:
            return "fail:mismatch", f"input '{name}': the model takes {_dtype_name(NUMPY_DTYPES.get(dtype))}" \
                                    f"{list(shape)}, the test gives {value.dtype.name}{list(value.shape)}"
    outputs = expected["outputs"]
    if len(outputs) > len(signature["output"]):
        return "fail:mismatch", f"{len(signature['output'])} outputs, the test expects {len(outputs)}"
    for i, (want, (dtype, shape)) in enumerate(zip(outputs, signature["output"])):
        if isinstance(want, NonTensor):
            return "fail:mismatch", f"output {i} should be a {want.what}"
        np_dtype = NUMPY_DTYPES.get(dtype)
        if np_dtype is None or np.dtype(np_dtype) != want.dtype:
            return "fail:mismatch", f"output {i} is {_dtype_name(np_dtype)}, expected {want.dtype.name}"
        if shape != want.shape:
            return "fail:mismatch", f"output {i} has shape {list(shape)}, expected {list(want.shape)}"
        got = np.fromfile(os.path.join(run_dir, f"output_{i}.bin"), dtype=np_dtype).reshape(shape)
        # As onnx's own runner: bfloat16 within two of its ulps, whatever rtol the case sets.
        problem = compare(want, got, max(rtol, 2 ** -6) if want.dtype == ml_dtypes.bfloat16 else rtol, atol)
        if problem:
            name = expected["output_names"][i] if i < len(expected["output_names"]) else str(i)
            if _OPTIONS.verbose:
                print(f"--- {run_dir}: output '{name}': {problem}; {_mismatch_detail(want, got)}", file=sys.stderr)
            return "fail:mismatch", f"output '{name}': {problem}"
    return "pass", ""


def _run_one(binary, slot, run_dir, rtol, atol):
    try:
        result = subprocess.run([binary, str(slot), run_dir], capture_output=True, text=True,
                                timeout=_OPTIONS.timeout)
    except subprocess.TimeoutExpired:
        return "fail:timeout", f"the run took over {_OPTIONS.timeout:g} s"
    if result.returncode < 0:
        try:
            name = signal.Signals(-result.returncode).name
        except ValueError:
            name = f"signal {-result.returncode}"
        return "fail:crash", name
    if result.returncode == 3:
        line = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "bad input file"
        return "fail:mismatch", re.sub(r"^input \d+ ", "input ", line)
    if result.returncode != 0:
        return "fail:crash", f"exit status {result.returncode}"
    return check_run(run_dir, rtol, atol)


def _run_units(binary, units):
    results = {}
    for slot, unit in enumerate(units):
        case = _CASES[unit["case"]]
        status = ("pass", "")
        for run_dir in unit["runs"]:
            status = _run_one(binary, slot, run_dir, case.rtol, case.atol)
            if status[0] != "pass":
                break
        if status[0] == "pass" and unit["bound"]:
            # Passes only with these inputs fixed at generation time: say so.
            status = ("pass", "bound-input:" + ",".join(unit["bound"]))
        previous = results.get(unit["case"])
        if previous is None or previous[0] == "pass":
            results[unit["case"]] = status
    return results


def build_and_run(job):
    """Compiles one batch and runs its units; returns ({case index: (status, reason)}, timings)."""
    number, units = job
    np.seterr(all="ignore")
    started = time.monotonic()
    binary, stderr = _compile(units, f"batch{number:04d}")
    results, compiled = {}, time.monotonic()
    if binary is not None:
        results.update(_run_units(binary, units))
    else:
        # One bad model spoils the batch: compile each case alone to find which.
        by_case = collections.defaultdict(list)
        for unit in units:
            by_case[unit["case"]].append(unit)
        for case, case_units in sorted(by_case.items()):
            alone, stderr = _compile(case_units, f"batch{number:04d}_c{case:05d}")
            if alone is None:
                results[case] = ("fail:compile-error", _first_error(stderr))
                if _OPTIONS.verbose:
                    print(f"--- {_CASES[case].id}: compile error\n{stderr[-3000:]}", file=sys.stderr)
            else:
                results.update(_run_units(alone, case_units))
        compiled = time.monotonic()
    finished = time.monotonic()
    if not _OPTIONS.keep_workdir:
        for unit in units:
            shutil.rmtree(unit["dir"], ignore_errors=True)
    return results, dict(units=len(units), compile=compiled - started, run=finished - compiled,
                         fallback=binary is None)


# ---------------------------------------------------------------------------------------------
# The driver, batches, and the whole run.


def _compile_driver(workdir):
    obj = os.path.join(workdir, "driver.o")
    result = subprocess.run([_compiler(), *_cxxflags(), "-I", REPO, "-c", os.path.join(HERE, "driver.cc"), "-o", obj],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"run_conformance: the driver does not compile:\n{result.stderr}")
    return obj


def make_batches(units, batch_size, batch_bytes):
    """Groups units (all of a case together) into batches of at most batch_size or ~batch_bytes."""
    by_case = collections.defaultdict(list)
    for unit in units:
        by_case[unit["case"]].append(unit)
    batches, current, size = [], [], 0
    for case in sorted(by_case):
        group = by_case[case]
        group_bytes = sum(u["source_bytes"] for u in group)
        if current and (len(current) + len(group) > batch_size or size + group_bytes > batch_bytes):
            batches.append(current)
            current, size = [], 0
        current += group
        size += group_bytes
    if current:
        batches.append(current)
    # Largest first, so that the last batches to finish are small ones.
    batches.sort(key=lambda b: -sum(u["source_bytes"] for u in b))
    return list(enumerate(batches))


def run(cases, options):
    global _CASES, _OPTIONS
    _CASES, _OPTIONS = cases, options
    timings = {}
    started = time.monotonic()
    options.driver_object = _compile_driver(options.workdir)
    context = multiprocessing.get_context("fork")
    results = {}
    with context.Pool(options.jobs) as pool:
        units = []
        for index, result, case_units in pool.imap_unordered(prepare_case, range(len(cases)), chunksize=4):
            if result is not None:
                results[index] = result
            units += case_units
        timings["generate"] = time.monotonic() - started
        batches = make_batches(units, options.batch_size, options.batch_bytes)
        phase = time.monotonic()
        done, compile_s, run_s = 0, 0.0, 0.0
        for batch_results, stats in pool.imap_unordered(build_and_run, batches, chunksize=1):
            results.update(batch_results)
            done += 1
            compile_s += stats["compile"]
            run_s += stats["run"]
            if options.verbose:
                print(f"  batch {done}/{len(batches)}: {stats['units']} models, compile {stats['compile']:.1f} s, "
                      f"run {stats['run']:.1f} s{' (compiled one by one)' if stats['fallback'] else ''}",
                      file=sys.stderr)
        timings["compile_and_run"] = time.monotonic() - phase
        timings["compile_cpu"], timings["run_cpu"] = compile_s, run_s
        timings["batches"] = len(batches)
        timings["models"] = len(units)
    timings["total"] = time.monotonic() - started
    return {cases[i].id: results[i] for i in range(len(cases))}, timings


# ---------------------------------------------------------------------------------------------
# Results: the file, totals and the regression check.


def format_results(results):
    totals = collections.Counter(status for status, _ in results.values())
    lines = [
        "# Conformance of the generated C++ with onnx's backend test cases "
        f"(onnx {onnx.__version__}; kinds: {', '.join(sorted({i.split('/', 1)[0] for i in results}))}).",
        "# One line per case, sorted: <kind>/<case name> <status> [<reason>]. Every case is listed;",
        "# tests/conformance/README.md explains the statuses and reasons.",
        f"# Regenerate with: {REGENERATE}",
        "# //tests/conformance:conformance_test re-runs every `pass` case and fails if one stopped passing.",
        "# Totals: " + ", ".join(f"{s} {n}" for s, n in sorted(totals.items())),
    ]
    for case_id in sorted(results):
        status, reason = results[case_id]
        lines.append(f"{case_id} {status} {reason}".rstrip())
    return "\n".join(lines) + "\n"


def parse_results(path):
    results = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            parts = line.split(" ", 2)
            results[parts[0]] = (parts[1], parts[2] if len(parts) > 2 else "")
    return results


def print_totals(results, timings, out=sys.stdout):
    by_status = collections.Counter(status for status, _ in results.values())
    by_category = collections.Counter(category(s, r) for s, r in results.values())
    by_reason = collections.Counter(f"{s} {r}".strip() for s, r in results.values() if s != "pass")
    print(f"\n{len(results)} cases", file=out)
    print("by status:", file=out)
    for status, n in sorted(by_status.items(), key=lambda x: (-x[1], x[0])):
        print(f"  {n:5d}  {status}", file=out)
    print("by reason category:", file=out)
    for cat, n in sorted(by_category.items(), key=lambda x: (-x[1], x[0])):
        print(f"  {n:5d}  {cat}", file=out)
    print("most frequent reasons:", file=out)
    for reason, n in sorted(by_reason.items(), key=lambda x: (-x[1], x[0]))[:30]:
        print(f"  {n:5d}  {reason}", file=out)
    failures = sorted((i, s, r) for i, (s, r) in results.items() if s.startswith("fail"))
    if failures:
        print(f"failures ({len(failures)}):", file=out)
        for case_id, status, reason in failures:
            print(f"  {case_id} {status} {reason}", file=out)
    if timings:
        print(f"time: {timings['total']:.0f} s ({timings['generate']:.0f} s generating, "
              f"{timings['compile_and_run']:.0f} s compiling and running {timings['models']} models in "
              f"{timings['batches']} batches: {timings['compile_cpu']:.0f} s compile + {timings['run_cpu']:.0f} s run "
              "summed over workers)", file=out)


def _default_results_path():
    workspace = os.environ.get("BUILD_WORKSPACE_DIRECTORY")  # set by `bazel run`
    return os.path.join(workspace or REPO, RESULTS_FILE)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated kinds of cases")
    parser.add_argument("--filter", default=None, help="only cases whose <kind>/<name> matches this regex")
    parser.add_argument("-j", "--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--batch_size", type=int, default=40, help="models compiled into one program")
    parser.add_argument("--batch_bytes", type=int, default=4 << 20, help="generated source bytes per program")
    parser.add_argument("--timeout", type=float, default=30, help="seconds per run of a model")
    parser.add_argument("--codegen_timeout", type=float, default=120, help="seconds to generate one model")
    parser.add_argument("--compile_timeout", type=float, default=900, help="seconds per compile")
    parser.add_argument("--results", default=None,
                        help="where to write the results (default: tests/conformance/results.txt in the "
                             "source tree, written only when every case ran)")
    parser.add_argument("--check", metavar="RESULTS", default=None,
                        help="re-run only the cases RESULTS lists as pass; exit 1 if any no longer passes")
    parser.add_argument("--cxxflags", default="",
                        help="extra compile and link flags, e.g. '-fsanitize=address,undefined "
                             "-fno-sanitize-recover=all'")
    parser.add_argument("--workdir", default=None, help="keep generated files here (default: a temporary dir)")
    parser.add_argument("--keep_workdir", action="store_true", help="do not delete generated models after runs")
    parser.add_argument("-v", "--verbose", action="store_true")
    options = parser.parse_args(argv)
    kinds = [k for k in options.kinds.split(",") if k]
    for k in kinds:
        if k not in KINDS:
            parser.error(f"unknown kind {k!r}; known: {', '.join(KINDS)}")

    cases = load_cases(kinds)
    expected = None
    if options.check:
        expected = parse_results(options.check)
        wanted = {i for i, (s, _) in expected.items() if s == "pass"}
        suite = {c.id for c in cases}
        gone = sorted(wanted - suite)
        unlisted = sorted(i for i in suite - set(expected))
        if gone or unlisted:
            if gone:
                print(f"run_conformance: {len(gone)} cases {options.check} lists as pass are not in the suite: "
                      + ", ".join(gone[:20]), file=sys.stderr)
            if unlisted:
                print(f"run_conformance: {len(unlisted)} cases of the suite are missing from {options.check}: "
                      + ", ".join(unlisted[:20]), file=sys.stderr)
            print(f"(a different onnx version?) Regenerate the file with: {REGENERATE}", file=sys.stderr)
            return 1
        cases = [c for c in cases if c.id in wanted]
    if options.filter:
        cases = [c for c in cases if re.search(options.filter, c.id)]
    if not cases:
        print("run_conformance: no cases selected", file=sys.stderr)
        return 1

    temporary = options.workdir is None
    if temporary:
        options.workdir = tempfile.mkdtemp(prefix="pure_model_conformance_", dir=os.environ.get("TEST_TMPDIR"))
    options.workdir = os.path.abspath(options.workdir)
    os.makedirs(options.workdir, exist_ok=True)
    global _OPTIONS
    _OPTIONS = options
    print(f"run_conformance: {len(cases)} cases, {options.jobs} jobs, {_compiler()} {' '.join(_cxxflags())}",
          file=sys.stderr)
    try:
        results, timings = run(cases, options)
    finally:
        if temporary and not options.keep_workdir:
            shutil.rmtree(options.workdir, ignore_errors=True)

    print_totals(results, timings)
    if expected is not None:
        regressed = sorted((i, s, r) for i, (s, r) in results.items() if s != "pass")
        if regressed:
            print(f"\nFAILED: {len(regressed)} cases listed as pass in {options.check} no longer pass:")
            for case_id, status, reason in regressed:
                print(f"  {case_id} {status} {reason}")
            return 1
        print(f"\nOK: all {len(results)} cases listed as pass still pass")
        return 0
    path = options.results
    if path is None and not options.filter and tuple(kinds) == KINDS:
        path = _default_results_path()
    if path:
        with open(path, "w", encoding="utf-8") as f:
            f.write(format_results(results))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
