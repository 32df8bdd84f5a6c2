"""Benchmarks the generated code against ONNX Runtime, model by model.

The one command (from anywhere in the checkout):

    tools/bazel run //tools/bench -- [--models=mlp,resnet18] [--out=bench_results]

For every model in tools/bench/models.txt (or --models_file) it

  1. builds `<model>_benchmark` (the generated code) and //tools/bench:ort_benchmark (ONNX
     Runtime's C++ API, 1 intra-op and 1 inter-op thread, sequential, ORT_ENABLE_ALL);
  2. times generate + compile: builds a copy of the model's library in a scratch package whose
     C++ namespace carries a fresh nonce, so the PureModelCodegen and CppCompile actions really
     run, and reads their durations from `bazel build --profile`;
  3. after one untimed warm-up process each, runs the two harnesses ALTERNATELY, ours, ORT, ours,
     ORT, ... for --rounds rounds, each as its own process (each measures its own latency and
     its own peak RSS, VmHWM), on the same pseudo-random inputs;
  4. reports per model: median latency of each and ours/ORT, peak RSS of each and ours/ORT,
     deployed bytes (our stripped binary against the stripped ORT harness + the stripped
     libonnxruntime.so it loads + the .onnx file) and ours/ORT, generate + compile time, and
     the GFLOP/s achieved (the build report's FLOPs / median latency) against the peak;
  5. ends with the geometric means of the ratios, and writes <out>/results.md (the table, also
     printed), <out>/results.json (everything, including every process's JSON line) and
     <out>/ratios.png (the ratios as a chart).

Also: the generated code is built for the best x86-64 level this machine runs (--config=x86_64_v4
with AVX-512, x86_64_v3 with AVX2+FMA), as ONNX Runtime picks its kernels for the machine at run
time; any --bazel_arg replaces that choice (--bazel_arg=--platforms=//platforms:x86_64 measures
the baseline), --emx=PATH adds emmtrix's emx-onnx-cgen as a third column (emx.py),
--no_build_timing skips step 2, --rounds/--runs/--seconds/--warmup tune step 3. A relative --out
is taken from the directory `bazel run` was started in. Nothing is asserted: the numbers depend on
the machine and on whatever else runs on it, which is why the harnesses alternate. See
tools/bench/README.md.
"""

import argparse
import ast
import datetime
import json
import math
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import emx

# The FP32 FMA peak of one core as measured for the project's notes (Zen 4 with AVX-512). The
# tool also measures the machine it runs on (//tools/bench:peak_flops) and reports both.
NOTES_PEAK_GFLOPS = 116.5
MIB = 1024.0 * 1024.0
SCRATCH_PACKAGE = "tools/bench/_generated"
DEFAULT_MODELS_FILE = "tools/bench/models.txt"


def log(message):
    print("bench: " + message, file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# ---- the model list ---------------------------------------------------------------------------


class ModelSpec:
    """One line of models.txt: a name, a pure_model_library label or an .onnx file (a label or a
    path), and input shapes ({"x": [1, 3, 224, 224]}; needed for an .onnx file with dynamic
    dimensions, checked against the library otherwise)."""

    def __init__(self, name, target, input_shapes):
        self.name = name
        self.target = target
        self.input_shapes = input_shapes

    @property
    def is_onnx(self):
        return self.target.endswith(".onnx")


def parse_shapes(tokens, where):
    shapes = {}
    for token in tokens:
        if "=" not in token:
            raise BenchError(f"{where}: expected INPUT=D0,D1,..., got {token!r}")
        name, dims = token.split("=", 1)
        try:
            shapes[name] = [int(d) for d in dims.split(",")]
        except ValueError:
            raise BenchError(f"{where}: bad dimensions in {token!r}") from None
    return shapes


def read_models_file(path):
    """models.txt: `name  target  [input=d0,d1,...]...` per line; `#` starts a comment."""
    specs = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            fields = line.split("#", 1)[0].split()
            if not fields:
                continue
            where = f"{path}:{number}"
            if len(fields) < 2:
                raise BenchError(f"{where}: expected `name target [input=dims]...`")
            name, target = fields[0], fields[1]
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise BenchError(f"{where}: model name {name!r} must be a C-like identifier")
            if any(s.name == name for s in specs):
                raise BenchError(f"{where}: model {name!r} is listed twice")
            specs.append(ModelSpec(name, target, parse_shapes(fields[2:], where)))
    return specs


def canonical_label(label):
    """`//a/b` -> `//a/b:b`; `//a/b:c` unchanged."""
    if label.startswith("@@//"):
        label = label[2:]
    if ":" not in label:
        label = label + ":" + label.rstrip("/").rsplit("/", 1)[-1]
    return label


# ---- running things ---------------------------------------------------------------------------


def child_env():
    """The environment for Bazel and the harnesses: ours without `bazel run`'s runfiles
    variables, which would confuse a nested Bazel or a Python child."""
    env = dict(os.environ)
    for key in list(env):
        if key.startswith(("RUNFILES_", "PYTHON")) or key in ("JAVA_RUNFILES",):
            del env[key]
    return env


class Bazel:
    def __init__(self, workspace, build_args=()):
        self.workspace = workspace
        self.launcher = os.path.join(workspace, "tools", "bazel")
        # --bazel_arg: options for every build and cquery (e.g. --config=x86_64_v4).
        self.build_args = list(build_args)

    def run(self, args, capture=True, check=True):
        command = [self.launcher] + args
        result = subprocess.run(
            command, cwd=self.workspace, env=child_env(), text=True,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None)
        if check and result.returncode != 0:
            detail = (result.stderr or "").strip().splitlines()[-15:] if capture else []
            raise BenchError("`bazel %s` failed (exit %d)%s" % (
                " ".join(args[:2]), result.returncode, ":\n" + "\n".join(detail) if detail else ""))
        return result

    def path(self, execroot_relative):
        # Files of external repositories (a model from @real_model_wheels) live in the output
        # base, not under the workspace's bazel-out link.
        if execroot_relative.startswith("external/"):
            if not hasattr(self, "_output_base"):
                self._output_base = self.run(["info", "output_base"]).stdout.strip()
            return os.path.join(self._output_base, execroot_relative)
        return os.path.join(self.workspace, execroot_relative)

    def apparent_repos(self):
        """Canonical repository name -> the name the main module calls it by (cquery prints
        `@@_main~ext~repo//...` for what BUILD files and the model list write `@repo//...`)."""
        result = self.run(["mod", "dump_repo_mapping", ""], check=False)
        try:
            mapping = json.loads(result.stdout) if result.returncode == 0 else {}
        except ValueError:
            mapping = {}
        return {canonical: apparent for apparent, canonical in mapping.items() if apparent and canonical}


def run_json(command, what):
    """Runs a harness and returns its last stdout line as JSON."""
    result = subprocess.run(command, env=child_env(), text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=tempfile.gettempdir())
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-10:])
        raise BenchError(f"{what} failed (exit {result.returncode}):\n{tail}")
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise BenchError(f"{what} printed no JSON line")
    return json.loads(lines[-1])


def model_inputs_from_help(benchmark):
    """Input names and shapes as our harness's --help lists them ("'x': float32[1,3,32,32]")."""
    result = subprocess.run([benchmark, "--help"], env=child_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    text = result.stdout.split("and outputs:")[0]
    shapes = {}
    for name, dims in re.findall(r"^\s+'(.*)': \w+\[([0-9,]*)\]$", text, re.M):
        shapes[name] = [int(d) for d in dims.split(",")] if dims else []
    if not shapes:
        raise BenchError(f"could not read the inputs from `{benchmark} --help`")
    return shapes


# ---- resolving models with Bazel ----------------------------------------------------------------


class Model:
    """A model ready to measure: paths of our harness, the .onnx file, the build report."""

    def __init__(self, spec):
        self.spec = spec
        self.name = spec.name
        self.library = None      # label of the pure_model_library
        self.onnx_label = None
        self.input_shapes = dict(spec.input_shapes)
        self.benchmark = None    # path of <library>_benchmark
        self.onnx = None         # path of the .onnx file
        self.report = None       # path of <library>_report.json
        self.build_time = None   # dict, from the timing build
        self.onnx_source = None  # for an .onnx path: the file itself
        self.obfuscate = False   # whether the library masks its weights (obfuscate = True)
        self.carried_attrs = ""  # the library's input_values/output_shapes lines, for the timing copy
        self.error = None


def _pure_model_library_call(name, model_label, shapes, extra=""):
    shapes_text = ", ".join(f'"{k}": "{",".join(str(d) for d in v)}"' for k, v in sorted(shapes.items()))
    return (f'pure_model_library(\n    name = "{name}",\n    model = "{model_label}",\n'
            f'    input_shapes = {{{shapes_text}}},\n{extra}    test = False,\n    tags = ["manual"],\n)\n')


class Workspace:
    """The Bazel side: resolves the list to targets, builds them, times codegen + compile."""

    def __init__(self, bazel, working_directory):
        self.bazel = bazel
        self.working_directory = working_directory
        self.scratch = os.path.join(bazel.workspace, SCRATCH_PACKAGE)

    def _query_libraries(self, models):
        labels = [m.library for m in models if not m.spec.is_onnx]
        if not labels:
            return
        codegen = " ".join(label + "_codegen" for label in labels)
        result = self.bazel.run(["query", "--output=build", f"set({codegen})"], check=False)
        if result.returncode != 0:
            raise BenchError("not every model in the list is a pure_model_library (looked for "
                             f"<label>_codegen):\n" + "\n".join(result.stderr.strip().splitlines()[-8:]))
        rules = {}
        for block in result.stdout.split("\n\n"):
            name = re.search(r'^\s+name = "(.*)",$', block, re.M)
            location = re.search(r"^# (.*)/BUILD(?:\.bazel)?:\d+:\d+$", block, re.M)
            if not name or not location:
                continue
            package = os.path.relpath(os.path.realpath(location.group(1)), os.path.realpath(self.bazel.workspace))
            model = re.search(r'^\s+model = "(.*)",$', block, re.M)
            shapes = re.search(r"^\s+input_shapes = (\{.*\}),$", block, re.M)
            obfuscate = re.search(r"^\s+obfuscate = True,$", block, re.M)
            # Carried to the timing copy as they are: what else the library binds or states.
            carried = "".join(f"    {found.group(0).strip()}\n" for found in re.finditer(
                r"^\s+(?:input_values|output_shapes) = \{.*\},$", block, re.M))
            rules[f"//{package}:{name.group(1)}"] = (
                model.group(1) if model else None,
                ast.literal_eval(shapes.group(1)) if shapes else {},
                bool(obfuscate), carried)
        for m in models:
            if m.spec.is_onnx:
                continue
            found = rules.get(m.library + "_codegen")
            if found is None or found[0] is None:
                raise BenchError(f"{m.name}: {m.library} is not a pure_model_library")
            m.onnx_label = canonical_label(found[0])
            bound = {k: [int(d) for d in v.split(",")] for k, v in found[1].items()}
            for name, dims in m.input_shapes.items():
                if name in bound and bound[name] != dims:
                    raise BenchError(f"{m.name}: models list says {name}={dims}, but {m.library} binds {bound[name]}")
            m.input_shapes.update(bound)
            m.obfuscate = found[2]
            m.carried_attrs = found[3]

    def _write_scratch(self, models, nonce, timing):
        """The scratch package: a library for every model given as an .onnx file, and with
        `timing` a copy of every model's library whose namespace holds `nonce`."""
        os.makedirs(self.scratch, exist_ok=True)
        parts = [
            '"""Written by //tools/bench while it runs, and removed after. Not checked in."""\n\n',
            'load("//rules:defs.bzl", "pure_model_library")\n\n',
        ]
        for m in models:
            if m.spec.is_onnx:
                target = m.spec.target
                if target.startswith(("//", "@")):
                    m.onnx_label = canonical_label(target)
                else:
                    source = os.path.abspath(os.path.join(self.working_directory, target))
                    if not os.path.isfile(source):
                        raise BenchError(f"{m.name}: no such file {source}")
                    link = os.path.join(self.scratch, m.name + ".onnx")
                    if os.path.lexists(link):
                        os.remove(link)
                    os.symlink(source, link)
                    m.onnx_source = source  # the link goes away with the scratch package
                    m.onnx_label = f"//{SCRATCH_PACKAGE}:{m.name}.onnx"
                parts.append(_pure_model_library_call(m.name, m.onnx_label, m.input_shapes))
            if timing:
                parts.append(_pure_model_library_call(
                    "timing_" + m.name, m.onnx_label, m.input_shapes,
                    extra=f'    namespace = "bench_timing_{nonce}",\n'
                    + ("    obfuscate = True,\n" if m.obfuscate else "") + m.carried_attrs))
        with open(os.path.join(self.scratch, "BUILD.bazel"), "w", encoding="utf-8") as f:
            f.write("\n".join(parts))

    def remove_scratch(self):
        shutil.rmtree(self.scratch, ignore_errors=True)

    def prepare(self, specs, time_builds):
        models = [Model(s) for s in specs]
        for m in models:
            m.library = f"//{SCRATCH_PACKAGE}:{m.name}" if m.spec.is_onnx else canonical_label(m.spec.target)
        self._query_libraries(models)
        nonce = "%x%06x" % (int(time.time()), random.getrandbits(24))
        self._write_scratch(models, nonce, time_builds)

        # Everything measured, in one build; --keep_going so that one failing model does not
        # stop the others.
        targets = ["//tools/bench:ort_benchmark", "//tools/bench:peak_flops"]
        for m in models:
            targets += [m.library + "_benchmark", m.library + "_codegen"]
            if not self._is_source_file(m.onnx_label):  # Bazel warns when asked to build one
                targets.append(m.onnx_label)
        log(f"building {len(models)} model(s) and the ONNX Runtime harness...")
        build = self.bazel.run(["build", "--keep_going", "--output_groups=+pure_model_report"]
                               + self.bazel.build_args + targets,
                               capture=False, check=False)
        files = self._files(targets + [m.onnx_label for m in models if m.onnx_label not in targets])
        tools = {
            "ort_benchmark": files.get("//tools/bench:ort_benchmark", [None])[0],
            "peak_flops": files.get("//tools/bench:peak_flops", [None])[0],
        }
        if build.returncode != 0 and not tools["ort_benchmark"]:
            raise BenchError("building //tools/bench:ort_benchmark failed")
        for m in models:
            package, name = m.library[2:].split(":")
            bench = files.get(m.library + "_benchmark", [None])[0]
            onnx = [p for p in files.get(m.onnx_label, []) if p.endswith(".onnx")]
            m.benchmark = bench
            m.onnx = m.onnx_source or (onnx[0] if len(onnx) == 1 else None)
            m.report = bench and os.path.join(os.path.dirname(bench), name + "_report.json")
            if not (m.benchmark and os.path.exists(m.benchmark) and m.onnx and os.path.exists(m.onnx)
                    and os.path.exists(m.report)):
                m.error = "build failed"
        if time_builds:
            for m in models:
                if not m.error:
                    m.build_time = self._time_build(m)
        return models, tools

    def _is_source_file(self, label):
        if not label.startswith("//"):
            return False
        package, name = label[2:].split(":", 1)
        return os.path.isfile(os.path.join(self.bazel.workspace, package, name))

    def _files(self, targets):
        expr = 'str(target.label) + "\\t" + "\\t".join([f.path for f in target.files.to_list()])'
        result = self.bazel.run(["cquery", "--keep_going", "--output=starlark", "--starlark:expr=" + expr]
                                + self.bazel.build_args + ["set(%s)" % " ".join(targets)], check=False)
        apparent = self.bazel.apparent_repos() if any(t.startswith("@") for t in targets) else {}
        files = {}
        for line in result.stdout.splitlines():
            label, *paths = line.split("\t")
            repo, sep, rest = label.partition("//")
            if sep and repo.lstrip("@") in apparent:
                label = "@" + apparent[repo.lstrip("@")] + "//" + rest
            files[canonical_label(label)] = [self.bazel.path(p) for p in paths if p]
        return files

    def _time_build(self, m):
        """Builds the nonce copy of the model's library and benchmark and returns the durations
        of its own actions from Bazel's profile."""
        log(f"{m.name}: timing generate + compile (a fresh copy of the library)...")
        with tempfile.TemporaryDirectory() as tmp:
            profile = os.path.join(tmp, "profile.json")
            started = time.monotonic()
            result = self.bazel.run(["build", f"--profile={profile}", "--noremote_accept_cached", "--disk_cache="]
                                    + self.bazel.build_args + [f"//{SCRATCH_PACKAGE}:timing_{m.name}_benchmark"],
                                    check=False)
            wall = time.monotonic() - started
            if result.returncode != 0:
                log(f"{m.name}: the timing build failed:\n" + "\n".join(result.stderr.strip().splitlines()[-8:]))
                return None
            with open(profile, encoding="utf-8") as f:
                trace = json.load(f)
        return durations_from_profile(trace, SCRATCH_PACKAGE, "timing_" + m.name, wall)


def durations_from_profile(trace, package, library, wall_s):
    """Sums the durations of the actions of `package` (which holds only the library being
    timed and its harness) by kind. None if the profile shows no codegen action."""
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    times = {"codegen_s": 0.0, "compile_s": 0.0, "compile_other_s": 0.0, "link_s": 0.0, "actions_s": 0.0}
    found = False
    for event in events:
        if event.get("cat") != "action processing" or event.get("ph") != "X":
            continue
        name = event.get("name", "")
        if package + "/" not in name and package + ":" not in name:
            continue
        seconds = event.get("dur", 0) / 1e6
        mnemonic = event.get("args", {}).get("mnemonic", "")
        times["actions_s"] += seconds
        if mnemonic == "PureModelCodegen":
            times["codegen_s"] += seconds
            found = True
        elif mnemonic == "CppCompile":
            # The model's own sources: its .cc and the assembler file that embeds its weights.
            own = name.endswith((f"{package}/{library}.cc", f"{package}/{library}_weights.S"))
            key = "compile_s" if own else "compile_other_s"
            times[key] += seconds
        elif mnemonic in ("CppLink", "CppArchive"):
            times["link_s"] += seconds
    if not found:
        return None
    times = {k: round(v, 3) for k, v in times.items()}
    times["wall_s"] = round(wall_s, 3)
    return times


# ---- sizes --------------------------------------------------------------------------------------


def stripped_size(path, tmp):
    """Size of a stripped copy of `path` (`strip` keeps a shared library's dynamic symbols)."""
    copy = os.path.join(tmp, "stripped")
    result = subprocess.run(["strip", "-o", copy, path], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if result.returncode != 0:
        return None
    size = os.path.getsize(copy)
    os.remove(copy)
    return size


def shared_libraries(binary):
    """{soname: real path} of what `binary` loads, from ldd."""
    result = subprocess.run(["ldd", binary], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    libraries = {}
    for name, path in re.findall(r"^\s*(\S+) => (/\S+)", result.stdout, re.M):
        libraries[name] = os.path.realpath(path)
    return libraries


def deployment_sizes(ours_binary, ort_binary, onnx_path, tmp):
    ours = stripped_size(ours_binary, tmp)
    ort_harness = stripped_size(ort_binary, tmp)
    ort_libs = shared_libraries(ort_binary)
    runtime = next((p for n, p in ort_libs.items() if n.startswith("libonnxruntime.so")), None)
    runtime_file = os.path.getsize(runtime) if runtime else None
    runtime_stripped = stripped_size(runtime, tmp) if runtime else None
    model = os.path.getsize(onnx_path)
    # Not in the headline number: what else ORT needs that our binary does not load (Debian's
    # ORT is linked against shared onnx, protobuf, abseil, re2, XNNPACK, ...).
    ours_libs = set(shared_libraries(ours_binary).values())
    extra = sorted(p for p in set(ort_libs.values()) if p not in ours_libs and p != runtime)
    total = None
    if None not in (ours, ort_harness, runtime_stripped):
        total = ort_harness + runtime_stripped + model
    return {
        "ours_stripped_bytes": ours,
        "ort_harness_stripped_bytes": ort_harness,
        "libonnxruntime": runtime,
        "libonnxruntime_file_bytes": runtime_file,
        "libonnxruntime_stripped_bytes": runtime_stripped,
        "model_file_bytes": model,
        "ort_total_bytes": total,
        "ort_other_libraries": len(extra),
        "ort_other_libraries_bytes": sum(os.path.getsize(p) for p in extra),
    }


# ---- measuring ----------------------------------------------------------------------------------


def summarize_processes(records):
    medians = [r["median_ms"] for r in records]
    return {
        "median_ms": statistics.median(medians),
        "min_ms": min(r["min_ms"] for r in records),
        "p90_ms": statistics.median(r["p90_ms"] for r in records),
        "process_medians_ms": medians,
        "peak_rss_kb": max(r["peak_rss_kb"] for r in records),
        "deterministic": all(r.get("deterministic", True) for r in records),
    }


def measure(model, ort_benchmark, args, emx_binary=None):
    """Runs the harnesses alternately, each process on its own: ours, ORT[, emx], ours, ORT..."""
    shapes = model_inputs_from_help(model.benchmark)
    ort_cmd = [ort_benchmark, "--model=" + os.path.abspath(model.onnx)]
    ort_cmd += ["--input_shape=%s=%s" % (k, ",".join(map(str, v))) for k, v in shapes.items()]
    commands = {"ours": [model.benchmark], "ort": ort_cmd}
    if emx_binary:
        commands["emx"] = [emx_binary]

    # Warm-up: one untimed process each, which also tells how many runs fit the time budget.
    warm = [run_json(cmd + ["--runs=3", "--warmup=1"], f"{model.name}: {who} benchmark")
            for who, cmd in commands.items()]
    if args.runs:
        runs = args.runs
    else:
        slowest = max(max(w["median_ms"] for w in warm), 1e-6)
        runs = int(min(max(args.seconds * 1000.0 / slowest, 5), 1000))
    common = [f"--runs={runs}", f"--warmup={args.warmup}", f"--seed={args.seed}"]
    records = {who: [] for who in commands}
    for _ in range(args.rounds):
        for who, cmd in commands.items():
            records[who].append(run_json(cmd + common, f"{model.name}: {who} benchmark"))
    result = {"runs_per_process": runs, "rounds": args.rounds, "warmup_per_process": args.warmup,
              "input_shapes": shapes}
    for who, processes in records.items():
        result[who] = summarize_processes(processes)
        result[who + "_processes"] = processes
    return result


def host_level_config():
    """--config for the best x86-64 level of this machine (see //platforms), or nothing."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return []
    if {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"} <= set(flags):
        return ["--config=x86_64_v4"]
    if {"avx2", "fma", "bmi1", "bmi2", "movbe"} <= set(flags):
        return ["--config=x86_64_v3"]
    return []


def march_of(bazel_args):
    """The -march our generated code gets under these Bazel options (see //platforms)."""
    text = " ".join(bazel_args)
    for level in ("v4", "v3"):
        if f"x86_64_{level}" in text:
            return [f"-march=x86-64-{level}"]
    return []


def ratio(a, b):
    return a / b if a is not None and b else None


def geomean(values):
    values = [v for v in values if v is not None and v > 0]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def gflops(flops, ms):
    return flops / (ms * 1e6) if flops is not None and ms else None


def evaluate(model, ort_benchmark, args, peaks, emx_dir=None):
    result = {"name": model.name, "target": model.spec.target, "library": model.library,
              "obfuscate": bool(model.obfuscate),
              "onnx": model.onnx, "error": model.error}
    if model.error:
        return result
    with open(model.report, encoding="utf-8") as f:
        report = json.load(f)
    result["report"] = {k: report.get(k) for k in ("flops", "steps", "ops", "arena_bytes", "weight_bytes",
                                                   "generated_bytes", "fused_activations")}
    emx_binary = None
    if args.emx:
        log(f"{model.name}: generating and compiling with emx-onnx-cgen...")
        try:
            shapes = model_inputs_from_help(model.benchmark)
            emx_binary, result["emx_build_time"] = emx.build(args.emx, model.name, model.onnx, shapes,
                                                             march_of(args.bazel_arg), emx_dir)
        except (emx.EmxError, OSError) as e:
            result["emx_error"] = str(e)
            log(f"{model.name}: emx-onnx-cgen: {e}")
    who = "ours, ONNX Runtime and emx-onnx-cgen" if emx_binary else "ours and ONNX Runtime"
    log(f"{model.name}: measuring ({args.rounds} rounds, {who} alternately)...")
    result.update(measure(model, ort_benchmark, args, emx_binary))
    with tempfile.TemporaryDirectory() as tmp:
        result["sizes"] = deployment_sizes(model.benchmark, ort_benchmark, model.onnx, tmp)
    result["build_time"] = model.build_time
    ours, ort, sizes = result["ours"], result["ort"], result["sizes"]
    flops = report.get("flops")
    result["ratios"] = {
        "latency": ratio(ours["median_ms"], ort["median_ms"]),
        "peak_rss": ratio(ours["peak_rss_kb"], ort["peak_rss_kb"]),
        "deployed_bytes": ratio(sizes["ours_stripped_bytes"], sizes["ort_total_bytes"]),
    }
    # Ours over ORT within each round, the two processes run back to back: less exposed to a
    # slow phase of the machine than the ratio of the medians, so the two together show noise.
    result["ratios"]["latency_paired_median"] = statistics.median(
        a["median_ms"] / b["median_ms"] for a, b in zip(result["ours_processes"], result["ort_processes"]))
    if emx_binary:
        with tempfile.TemporaryDirectory() as tmp:
            sizes["emx_stripped_bytes"] = stripped_size(emx_binary, tmp)
        result["ratios_vs_emx"] = {
            "latency": ratio(ours["median_ms"], result["emx"]["median_ms"]),
            "peak_rss": ratio(ours["peak_rss_kb"], result["emx"]["peak_rss_kb"]),
            "deployed_bytes": ratio(sizes["ours_stripped_bytes"], sizes["emx_stripped_bytes"]),
        }
    result["gflops"] = {
        "ours": gflops(flops, ours["median_ms"]),
        "ort": gflops(flops, ort["median_ms"]),
    }
    if emx_binary:
        result["gflops"]["emx"] = gflops(flops, result["emx"]["median_ms"])
    for who in [w for w in ("ours", "ort", "emx") if w in result["gflops"]]:
        value = result["gflops"][who]
        result["gflops"][who + "_of_notes_peak"] = ratio(value, peaks["notes"])
        result["gflops"][who + "_of_measured_peak"] = ratio(value, peaks.get("measured"))
    return result


# ---- reporting ----------------------------------------------------------------------------------


def _fmt(value, digits=3):
    if value is None:
        return "–"
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = max(0, digits - 1 - magnitude)
    return f"{value:.{decimals}f}"


def _pct(value):
    return "–" if value is None else f"{100 * value:.0f}%"


def markdown(results, peaks, meta):
    measured = peaks.get("measured")
    peak_note = "% of peak" + (" notes / here" if measured else "")
    header = ["model", "MFLOP", "ours ms", "ORT ms", "ours/ORT",
              "ours RSS MiB", "ORT RSS MiB", "ours/ORT",
              "ours MiB", "ORT MiB", "ours/ORT",
              "gen + compile s", f"ours GFLOP/s ({peak_note})", f"ORT GFLOP/s ({peak_note})"]
    rows = []
    for r in results:
        if r.get("error"):
            rows.append([r["name"], f"**{r['error']}**"] + [""] * (len(header) - 2))
            continue
        bt = r.get("build_time")
        build = f"{bt['codegen_s']:.1f} + {bt['compile_s']:.1f}" if bt else "–"
        g = r["gflops"]

        def gcell(who):
            parts = _pct(g[who + "_of_notes_peak"])
            if measured:
                parts += " / " + _pct(g[who + "_of_measured_peak"])
            return f"{_fmt(g[who])} ({parts})"

        rows.append([
            r["name"], _fmt(r["report"]["flops"] / 1e6 if r["report"]["flops"] is not None else None),
            _fmt(r["ours"]["median_ms"]), _fmt(r["ort"]["median_ms"]), _fmt(r["ratios"]["latency"]),
            _fmt(r["ours"]["peak_rss_kb"] / 1024), _fmt(r["ort"]["peak_rss_kb"] / 1024), _fmt(r["ratios"]["peak_rss"]),
            _fmt(r["sizes"]["ours_stripped_bytes"] / MIB), _fmt(r["sizes"]["ort_total_bytes"] / MIB),
            _fmt(r["ratios"]["deployed_bytes"]),
            build, gcell("ours"), gcell("ort"),
        ])
    ok = [r for r in results if not r.get("error") and not r.get("obfuscate")]
    gm = meta["geomean"]
    rows.append(["**geomean**", "", "", "", f"**{_fmt(gm['latency'])}**", "", "", f"**{_fmt(gm['peak_rss'])}**",
                 "", "", f"**{_fmt(gm['deployed_bytes'])}**", "",
                 _fmt(geomean([r["gflops"]["ours"] for r in ok])), _fmt(geomean([r["gflops"]["ort"] for r in ok]))])
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["--:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    if meta.get("emx"):
        lines += [""] + emx_table(results)
    notes = [
        "",
        f"Latency: median over {meta['rounds']} processes each (per-process medians of the timed runs), "
        "ours and ONNX Runtime run alternately, one after the other, after a warm-up process each; "
        "ORT 1 intra-op + 1 inter-op thread, sequential, ORT_ENABLE_ALL. "
        "Geomeans are over the plain builds (an obfuscated variant is listed for its cost). "
        "RSS: peak resident set (VmHWM) of each process, the largest over its rounds. "
        "Deployed: our stripped `<model>_benchmark` against the stripped `ort_benchmark` + the stripped "
        "libonnxruntime.so it loads (`strip` of a copy) + the .onnx file; ORT's other shared libraries "
        "(Debian links onnx, protobuf, abseil, XNNPACK, ... as shared libraries) are not counted, see "
        "results.json. gen + compile: the PureModelCodegen and the model's CppCompile action of a fresh "
        "build, from Bazel's profile. GFLOP/s: the build report's FLOPs (2 per multiply-add) / median latency.",
        machine_line(meta, peaks),
    ]
    return "\n".join(lines + notes) + "\n"


def emx_table(results):
    """The third column, as its own table: emx-onnx-cgen's numbers and ours relative to them."""
    header = ["model", "emx ms", "ours/emx", "emx RSS MiB", "ours/emx", "emx MiB", "ours/emx",
              "emx gen + compile s", "emx GFLOP/s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["--:"] * (len(header) - 1)) + "|"]
    for r in results:
        if r.get("error"):
            continue
        if "emx" not in r:
            reason = (r.get("emx_error") or "not run").replace("|", "/")
            lines.append(f"| {r['name']} | {reason} |" + " |" * (len(header) - 2))
            continue
        e, q, bt = r["emx"], r["ratios_vs_emx"], r["emx_build_time"]
        lines.append("| " + " | ".join([
            r["name"], _fmt(e["median_ms"]), _fmt(q["latency"]), _fmt(e["peak_rss_kb"] / 1024), _fmt(q["peak_rss"]),
            _fmt(r["sizes"]["emx_stripped_bytes"] / MIB), _fmt(q["deployed_bytes"]),
            f"{bt['codegen_s']:.1f} + {bt['compile_s']:.1f}", _fmt(r["gflops"]["emx"])]) + " |")
    ok = [r for r in results if "ratios_vs_emx" in r]
    lines.append("| **geomean** | | " + " | | ".join(
        f"**{_fmt(geomean([r['ratios_vs_emx'][k] for r in ok]))}**" for k in ("latency", "peak_rss", "deployed_bytes"))
        + " | | |")
    lines += ["", "emx-onnx-cgen (emmtrix, PyPI): its C for the same .onnx, dynamic dimensions pinned, weights "
              "inline, compiled with gcc -O3 and the same -march as ours, timed by a main of the same kind; "
              "generate + compile are the wall times of the two commands (not Bazel actions)."]
    return lines


def machine_line(meta, peaks):
    measured = peaks.get("measured")
    peak = f"Peak of one core (FP32 FMA): {NOTES_PEAK_GFLOPS:g} GFLOP/s from the project notes"
    if measured:
        peak += (f" (the first percentage) and {measured:.1f} GFLOP/s measured here by "
                 f"//tools/bench:peak_flops (the second; AVX-512 {peaks.get('avx512') or 0:.0f}, "
                 f"AVX2 {peaks.get('avx2') or 0:.0f})")
    options = " ".join(meta.get("bazel_args") or []) or "none (baseline x86-64 for the generated code)"
    return (f"Machine: {meta['cpu']}. {peak}. Load average before / after: {meta['load_before']} / "
            f"{meta['load_after']}. Bazel options: {options}. Commit {meta['commit']}, {meta['date']}.")


def chart(results, meta, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not available: no chart (tools/bazel's root has python3-matplotlib)")
        return False
    ok = [r for r in results if not r.get("error")]
    names = [r["name"] for r in ok] + ["geomean"]
    kinds = [("latency", "latency"), ("peak_rss", "peak RSS"), ("deployed_bytes", "deployed bytes")]
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(names) + 2), 4.5), dpi=120)
    width = 0.8 / len(kinds)
    colours = ["#d62728", "#1f77b4", "#2ca02c"]
    for k, ((key, label), colour) in enumerate(zip(kinds, colours)):
        values = [r["ratios"][key] for r in ok] + [meta["geomean"][key]]
        xs = [i + (k - (len(kinds) - 1) / 2) * width for i in range(len(names))]
        # Bars grow from parity (1) towards the value, up when ours is worse, down when better.
        bars = ax.bar(xs, [(v or 1) - 1 for v in values], width, bottom=1, label=label, color=colour)
        for bar, value in zip(bars, values):
            if value:
                ax.annotate(_fmt(value, 2), (bar.get_x() + bar.get_width() / 2, value), ha="center",
                            va="bottom" if value >= 1 else "top", fontsize=7,
                            xytext=(0, 2 if value >= 1 else -2), textcoords="offset points")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names)
    ax.set_ylabel("ours / ONNX Runtime (log; below 1: ours is better)")
    ax.set_title(f"rules_pure_model vs ONNX Runtime, one core ({meta['commit']})", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def machine_info(workspace):
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            text = f.read()
        name = re.search(r"^model name\s*: (.*)$", text, re.M)
        family = re.search(r"^cpu family\s*: (.*)$", text, re.M)
        model = re.search(r"^model\s*: (.*)$", text, re.M)
        cpu = (name.group(1) if name else cpu) + (
            f" (family {family.group(1)}, model {model.group(1)})" if family and model else "")
    except OSError:
        pass
    return cpu, git_commit(workspace)


def git_commit(workspace):
    """The checked-out commit, with git if there is one (the provisioned root has none), else
    read from .git directly."""
    if not workspace:
        return "unknown"
    try:
        head = subprocess.run(["git", "-C", workspace, "rev-parse", "--short", "HEAD"], text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        dirty = subprocess.run(["git", "-C", workspace, "status", "--porcelain", "--untracked-files=no"],
                               text=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        if head.returncode == 0:
            return head.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")
    except OSError:
        pass
    git_dir = os.path.join(workspace, ".git")
    try:
        if os.path.isfile(git_dir):  # a worktree: "gitdir: PATH"
            with open(git_dir, encoding="utf-8") as f:
                git_dir = os.path.join(workspace, f.read().split(":", 1)[1].strip())
        with open(os.path.join(git_dir, "HEAD"), encoding="utf-8") as f:
            head = f.read().strip()
        if not head.startswith("ref: "):
            return head[:7]
        ref = head[5:]
        for directory in (git_dir, os.path.join(git_dir, "..", "..")):  # worktrees share refs
            path = os.path.join(directory, ref)
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as f:
                    return f.read().strip()[:7]
            packed = os.path.join(directory, "packed-refs")
            if os.path.isfile(packed):
                with open(packed, encoding="utf-8") as f:
                    for line in f:
                        if line.rstrip().endswith(" " + ref):
                            return line[:7]
    except (OSError, IndexError):
        pass
    return "unknown"


def load_average():
    try:
        with open("/proc/loadavg", encoding="utf-8") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


# ---- main ---------------------------------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="bench", description="Benchmarks rules_pure_model's generated code against ONNX Runtime.",
        epilog="Run it as: tools/bazel run //tools/bench -- [flags]")
    parser.add_argument("--models", default="", help="comma-separated names from the models file (default: all)")
    parser.add_argument("--models_file", default=None,
                        help=f"the list of models (default: {DEFAULT_MODELS_FILE} in the workspace)")
    parser.add_argument("--out", default="bench_results", help="directory for results.{md,json} and ratios.png")
    parser.add_argument("--rounds", type=int, default=5, help="processes of each harness, alternating (default 5)")
    parser.add_argument("--runs", type=int, default=0,
                        help="timed runs per process (default: as many as fit --seconds, 5 to 1000)")
    parser.add_argument("--seconds", type=float, default=1.0, help="timed seconds per process when --runs is unset")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs at the start of each process")
    parser.add_argument("--seed", type=int, default=0, help="seed of the pseudo-random inputs")
    parser.add_argument("--no_build_timing", action="store_true",
                        help="skip the generate + compile timing builds (the slow part for big models)")
    parser.add_argument("--no_peak_probe", action="store_true",
                        help="do not measure this core's peak FLOP/s (//tools/bench:peak_flops)")
    parser.add_argument("--bazel_arg", action="append", default=[],
                        help="an option for every build (repeatable); default: the --config of this machine's "
                             "best x86-64 level, e.g. --config=x86_64_v4")
    parser.add_argument("--emx", default=None,
                        help="path of an `emx-onnx-cgen` command: adds emmtrix's generator as a third column")
    parser.add_argument("--prebuilt", action="append", default=[],
                        help="NAME|BENCHMARK|ONNX|REPORT: measure already built files, without Bazel (for tests)")
    parser.add_argument("--ort_benchmark", default=None, help="with --prebuilt: the ort_benchmark binary")
    parser.add_argument("--peak_flops", default=None, help="with --prebuilt: the peak_flops binary")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.runs < 0 or args.warmup < 0 or args.seconds <= 0:
        parser.error("--rounds must be >= 1, --runs and --warmup >= 0, --seconds > 0")
    if args.prebuilt and not args.ort_benchmark:
        parser.error("--prebuilt needs --ort_benchmark")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    working_directory = os.environ.get("BUILD_WORKING_DIRECTORY") or os.getcwd()
    workspace = os.environ.get("BUILD_WORKSPACE_DIRECTORY")
    out_dir = os.path.join(working_directory, args.out)
    load_before = load_average()

    workspace_tool = None
    if args.prebuilt:
        models = []
        for entry in args.prebuilt:
            parts = entry.split("|")
            if len(parts) != 4:
                raise BenchError(f"--prebuilt: expected NAME|BENCHMARK|ONNX|REPORT, got {entry!r}")
            m = Model(ModelSpec(parts[0], parts[2], {}))
            m.library = "(prebuilt)"
            m.benchmark, m.onnx, m.report = (os.path.abspath(p) for p in parts[1:])
            models.append(m)
        tools = {"ort_benchmark": os.path.abspath(args.ort_benchmark),
                 "peak_flops": args.peak_flops and os.path.abspath(args.peak_flops)}
    else:
        if not workspace:
            raise BenchError("run me with `tools/bazel run //tools/bench -- ...` (BUILD_WORKSPACE_DIRECTORY is unset)")
        models_file = os.path.join(working_directory, args.models_file) if args.models_file else \
            os.path.join(workspace, DEFAULT_MODELS_FILE)
        specs = read_models_file(models_file)
        if args.models:
            wanted = [n.strip() for n in args.models.split(",") if n.strip()]
            unknown = [n for n in wanted if n not in {s.name for s in specs}]
            if unknown:
                raise BenchError(f"not in {models_file}: {', '.join(unknown)} (have: {', '.join(s.name for s in specs)})")
            specs = [s for s in specs if s.name in wanted]
        if not args.bazel_arg:
            args.bazel_arg = host_level_config()
        workspace_tool = Workspace(Bazel(workspace, args.bazel_arg), working_directory)
        try:
            models, tools = workspace_tool.prepare(specs, not args.no_build_timing)
        finally:
            workspace_tool.remove_scratch()

    peaks = {"notes": NOTES_PEAK_GFLOPS}
    probe_peak = tools.get("peak_flops") and not args.no_peak_probe

    def update_peak():
        # The best of the probes before and after the models: on a shared machine a probe can
        # land on a busy moment, and then it underestimates.
        log("measuring this core's peak FLOP/s...")
        probe = run_json([tools["peak_flops"]], "peak_flops")
        for key, value in (("measured", probe["peak_gflops"]), ("avx512", probe["avx512_gflops"]),
                           ("avx2", probe["avx2_gflops"])):
            if value is not None and value > (peaks.get(key) or 0):
                peaks[key] = value

    if probe_peak:
        update_peak()
    results = []
    emx_dir = tempfile.mkdtemp(prefix="bench_emx_") if args.emx else None
    for model in models:
        try:
            result = evaluate(model, tools["ort_benchmark"], args, peaks, emx_dir)
        except BenchError as e:
            log(f"{model.name}: {e}")
            result = {"name": model.name, "target": model.spec.target, "error": str(e).splitlines()[0]}
        results.append(result)
        if not result.get("error"):
            r = result
            bt = r.get("build_time")
            log(f"{r['name']}: ours {_fmt(r['ours']['median_ms'])} ms, ORT {_fmt(r['ort']['median_ms'])} ms "
                f"(x{_fmt(r['ratios']['latency'])}); peak RSS {r['ours']['peak_rss_kb']} / {r['ort']['peak_rss_kb']} kB "
                f"(x{_fmt(r['ratios']['peak_rss'])}); deployed {r['sizes']['ours_stripped_bytes']} / "
                f"{r['sizes']['ort_total_bytes']} B (x{_fmt(r['ratios']['deployed_bytes'])}); "
                + (f"generate {bt['codegen_s']} s + compile {bt['compile_s']} s; " if bt else "")
                + f"{_fmt(r['gflops']['ours'])} / {_fmt(r['gflops']['ort'])} GFLOP/s")

    if emx_dir:
        shutil.rmtree(emx_dir, ignore_errors=True)
    if probe_peak:
        update_peak()
        # GFLOP/s shares of the measured peak, now that it is final.
        for r in results:
            for who in [w for w in ("ours", "ort", "emx") if w in r.get("gflops", {})]:
                r["gflops"][who + "_of_measured_peak"] = ratio(r["gflops"][who], peaks.get("measured"))
    ok = [r for r in results if not r.get("error")]
    cpu, commit = machine_info(workspace)
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu, "commit": commit, "rounds": args.rounds, "bazel_args": args.bazel_arg,
        "emx": args.emx,
        "load_before": load_before, "load_after": load_average(),
        # Over the plain builds: an obfuscated variant is the same model again, listed for its cost.
        "geomean": {key: geomean([r["ratios"][key] for r in ok if not r.get("obfuscate")])
                    for key in ("latency", "peak_rss", "deployed_bytes")},
    }
    os.makedirs(out_dir, exist_ok=True)
    table = markdown(results, peaks, meta)
    with open(os.path.join(out_dir, "results.md"), "w", encoding="utf-8") as f:
        f.write("# rules_pure_model vs ONNX Runtime\n\n" + table)
    document = {"tool": "//tools/bench", "meta": meta, "peak_gflops": peaks,
                "settings": {k: getattr(args, k) for k in ("rounds", "runs", "seconds", "warmup", "seed")},
                "models": results}
    with open(os.path.join(out_dir, "results.json"), "w", encoding="utf-8") as f:
        json.dump(document, f, indent=2, sort_keys=False)
        f.write("\n")
    charted = bool(ok) and chart(results, meta, os.path.join(out_dir, "ratios.png"))
    print(table)
    log(f"wrote {out_dir}/results.md, results.json" + (", ratios.png" if charted else ""))
    return 0 if ok and len(ok) == len(results) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"bench: error: {e}", file=sys.stderr)
        sys.exit(1)
