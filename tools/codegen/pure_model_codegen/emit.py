"""IR + memory plan -> C++ sources: the model header, its implementation, a descriptor, and the
weights as a binary blob with the assembler file that embeds it.

The op modules write each step's statements; the Mako templates in templates/ hold the file
skeletons (includes, class, Run(), the blob's symbols). Output is a pure function of the inputs:
no timestamps, no absolute paths, no dict-order or hash-order dependence.

The weights blob holds every constant the generated code reads: initializers, and the weights the
generator packed or folded (Conv panels, folded BatchNormalization). Each tensor starts at a
multiple of 64 bytes (zero padding between), in the element type and layout the kernels read,
little-endian; the generated source says in a comment which tensor is at which offset. The
compiler never parses it: the assembler file `.incbin`s it whole into `.rodata.pure_model_weights`
and defines one hidden symbol per tensor, which the source declares as an array. Literal arrays in
the source cost far more to write and compile (a 47 MB model made a 190 MB source).
"""

import os

import mako.template
import numpy as np

from pure_model_codegen import cpp, ir, memory, obfuscate, ops, report
from pure_model_codegen.ops import control
from pure_model_codegen.errors import CodegenError

_TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
_VALUES_PER_LINE = 8
# Every tensor in the weights blob starts at a multiple of this: a cache line, and the widest
# vector load (AVX-512) the kernels make.
BLOB_ALIGNMENT = 64
# Ops whose kernels still read constant inputs as plain pointers: with obfuscate they are refused
# (clearly, at generation time) rather than left to fail to compile.
_UNMASKED_KERNEL_OPS = ("RNN", "GRU", "LSTM", "DynamicQuantizeLSTM", "GridSample", "QuantizeLinear", "DequantizeLinear",
                        "DynamicQuantizeLinear", "ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul")


def _template(name):
    with open(os.path.join(_TEMPLATES, name), encoding="utf-8") as f:
        return mako.template.Template(f.read(), strict_undefined=True)


class _Names:
    """Unique C++ identifiers, handed out in a fixed order so the output is deterministic."""

    def __init__(self):
        self._used = set()

    def take(self, base):
        name, suffix = base, 2
        # Never a keyword or a name the generated code declares itself (loop counters and locals).
        # The suffix joins with one underscore: a base ending in '_' would otherwise give '__',
        # reserved whatever the number, and the loop would never end.
        while name in self._used or cpp.is_reserved(name):
            name, suffix = f"{base.rstrip('_') or 'v'}_{suffix}", suffix + 1
        self._used.add(name)
        return name


def _format_indices(values):
    """Lines of comma-separated integer literals, for the index tables kept in the source."""
    items = [str(int(v)) for v in np.asarray(values, dtype=np.int64).reshape(-1)]
    return [", ".join(items[i:i + _VALUES_PER_LINE]) + "," for i in range(0, len(items), _VALUES_PER_LINE)]


class _Blob:
    """The weights blob under construction. Tensors are numbered in the order the steps first read
    them, and laid out in that order, or, obfuscated, in an order the key shuffles."""

    def __init__(self, symbol_prefix, key=None):
        self._prefix = symbol_prefix
        self._key = key
        self.masked = key is not None
        self._data = []
        self.entries = []
        self.size = 0

    def add(self, array, dtype, **fields):
        """Appends a tensor; returns its entry (symbol, element type and count, bytes, + fields)."""
        np_type = np.dtype(ir.numpy_type(dtype)).newbyteorder("<")
        data = np.ascontiguousarray(np.asarray(array).astype(np_type, copy=False)).reshape(-1).tobytes()
        # An empty tensor still gets a symbol to point at, one element long, that nothing reads.
        data = data or bytes(np_type.itemsize)
        index = len(self.entries)
        entry = dict(symbol=f"{self._prefix}_w{index}", nbytes=len(data), cpp_type=ir.cpp_type(dtype),
                     size=len(data) // np_type.itemsize, **fields)
        if self._key is not None:
            entry["seed"] = obfuscate.tensor_seed(self._key, index)
            data = obfuscate.mask(data, entry["seed"])
        self._data.append(data)
        self.entries.append(entry)
        return entry

    def layout(self):
        """Gives every entry its offset; returns the blob's bytes."""
        order = range(len(self.entries)) if self._key is None else obfuscate.shuffled(self._key, len(self.entries))
        chunks, self.size = [], 0
        for index in order:
            offset = -(-self.size // BLOB_ALIGNMENT) * BLOB_ALIGNMENT
            padding = bytes(offset - self.size)
            if self._key is not None:  # keystream, not zeros, so that no tensor's end shows
                padding = obfuscate.mask(padding, obfuscate.tensor_seed(self._key, -1 - index))
            chunks += [padding, self._data[index]]
            self.entries[index]["offset"] = offset
            self.size = offset + len(self._data[index])
        return b"".join(chunks)


def blob_symbol_prefix(namespace, class_name):
    """A C symbol prefix unique to the class: its namespace parts and name, each after its length
    (as C++ name mangling does), so that `a::b_c` and `a_b::c` never meet."""
    parts = [p for p in namespace.split("::") if p] + [class_name]
    return "pure_model_" + "".join(f"{len(p)}{p}" for p in parts)


class EmitContext:
    """What an op module's emit() sees: the graph, tensor pointers, and places to put helpers."""

    def __init__(self, graph, names, tensor_vars, plan, blob):
        self.graph = graph
        self.blob = blob
        self._plan = plan
        self._names = names
        self._tensor_vars = tensor_vars
        self._constant_vars = {}
        self.param_structs = []  # (comment, struct name, [(type, field, value text)])
        self.derived = []  # (comment, C++ type, name, size, value lines)
        # Constants are embedded only once a step reads them: parameters that were folded into
        # others at generation time (BatchNormalization's mean, Clip's bounds) never ship.
        self.weight_bytes = 0
        # Tensors some step reads or writes; only their pointers are declared in Run().
        self.used = set()
        self._neutral_counts = {}

    def _take(self, readable, neutral):
        """An identifier for a helper: from the node or tensor it serves, or, obfuscated, a
        numbered neutral one, because these names reach the object files' symbol tables (template
        instances, local data), which only stripping removes."""
        if not self.masked:
            return self._names.take(readable)
        self._neutral_counts[neutral] = self._neutral_counts.get(neutral, 0) + 1
        return self._names.take(f"{neutral}{self._neutral_counts[neutral]}")

    def ptr(self, tensor_name):
        self.used.add(tensor_name)
        tensor = self.graph.tensor(tensor_name)
        # A constant reads from its embedded array even when it is also a graph output (whose
        # buffer it is copied into at the end of Run()).
        if tensor.is_constant and tensor_name not in self._constant_vars:
            var = self._take("kWeight" + cpp.camel_case(cpp.identifier(tensor_name)), "kWeight")
            self._constant_vars[tensor_name] = var
            self.blob.add(tensor.value, tensor.dtype, var=var,
                          comment=cpp.comment_text(f"Constant '{tensor_name}': {tensor.describe()}"))
            self.weight_bytes += tensor.nbytes
        if tensor.is_constant:
            return self._constant_vars[tensor_name]
        return self._tensor_vars[tensor_name]

    @property
    def masked(self):
        """Whether constants are masked views (obfuscate): they index like arrays, nothing more."""
        return self.blob.masked

    def copy(self, dst, src, nbytes):
        """The statement `memcpy(dst, src, nbytes)`, for a source that may be a constant: a masked
        one is unmasked on the way."""
        return f"{'pure_model::CopyBytes' if self.masked else 'std::memcpy'}({dst}, {src}, {nbytes});"

    def bytes_of(self, src):
        """`src` as bytes, to copy from at a byte offset."""
        return f"pure_model::Bytes({src})" if self.masked else f"reinterpret_cast<const unsigned char*>({src})"

    def scratch(self, node, cpp_type="float"):
        """Pointer to the node's working space in the arena (see OpDef.scratch)."""
        return f"reinterpret_cast<{cpp_type}*>(arena_ + {self._plan.scratch[node.name]})"

    def param_struct(self, node, fields):
        name = self._take(cpp.camel_case(node.name) + "Params", "StepParams")
        rows = []
        for field, value in fields:
            if isinstance(value, tuple):
                rows.append((value[0], field, value[1]))
            elif isinstance(value, bool):
                rows.append(("bool", field, "true" if value else "false"))
            elif isinstance(value, (int, np.integer)):
                rows.append(("int", field, str(int(value))))
            else:
                rows.append(("float", field, cpp.float_literal(value)))
        for type_, field, value in rows:
            if type_ == "int" and not -(1 << 31) <= int(value) < (1 << 31):
                raise CodegenError(f"{field} = {value} does not fit the kernels' 32-bit int parameters", node=node)
        self.param_structs.append(
            (cpp.comment_text(f"Shapes and attributes of node '{node.name}' ({node.op_type})."), name, rows))
        return name

    def int_table(self, node, label, values):
        ops.check_table_size(node, label, len(values))
        name = self._take(cpp.identifier(f"k_{cpp.camel_case(node.name)}_{label}"), "kTable")
        self.derived.append((cpp.comment_text(f"{label} of node '{node.name}' ({node.op_type})."), "std::size_t", name,
                             len(values), _format_indices(values)))
        return name

    def derived_constant(self, node, label, array, comment="computed at generation time", dtype=1):
        """Embeds an array the generator computed (folded or packed weights), of ONNX element type
        `dtype` (float32 unless given); counts as weights."""
        name = self._take("k" + cpp.camel_case(node.name) + cpp.camel_case(label), "kDerived")
        entry = self.blob.add(array, dtype, var=name,
                              comment=cpp.comment_text(f"{label} of node '{node.name}' ({node.op_type}), {comment}."))
        self.weight_bytes += entry["nbytes"]
        return name


def _shown_values(tensor, limit=16):
    """The values of a bound input as the header documents them: the first `limit`, then a count."""
    flat = np.asarray(tensor.value).reshape(-1)
    items = [str(v).lower() if tensor.dtype == 9 else repr(v.item()) for v in flat[:limit]]
    more = f", ... ({flat.size} values)" if flat.size > limit else ""
    return "{" + ", ".join(items) + more + "}"


def _describe_step(node, graph):
    ins = ", ".join(f"'{n}' {graph.tensor(n).describe()}" for n in node.inputs if n)
    outs = ", ".join(f"'{n}' {graph.tensor(n).describe()}" for n in node.outputs if n)
    op = node.op_type
    if "_identity_of" in node.attrs:  # passes/identity_views.py
        op = f"{node.attrs['_identity_of']} keeping every element: a view"
    text = f"node '{node.name}' ({op}): {ins} -> {outs}"
    if "_members" in node.attrs:  # a fused step (passes/fuse_elementwise.py)
        members = ", ".join(f"'{m.name}' ({m.op_type})" for m in node.attrs["_members"])
        text = f"nodes {members} in one loop: {ins} -> {outs}"
    if "_folded_batchnorm" in node.attrs:
        text += f"; includes node '{node.attrs['_folded_batchnorm']}' (BatchNormalization), folded into weights"
    if "_fused_residual" in node.attrs:
        text += f"; adds its last input as node '{node.attrs['_fused_residual']}' (Add) did"
    for cond, value in control.guard_of(node):
        text += f"; runs only when '{cond}' is {str(value).lower()}"
    if "_select" in node.attrs:
        text += "; copies the outputs of the branch its condition selects"
    if "_fused_from" in node.attrs:
        text += f"; applies the activation of node '{node.attrs['_fused_from']}'"
    return cpp.comment_text(text)


def generate(graph, *, namespace, class_name, header_include, model_label, cpu, weights_path, profile_steps=False,
             obfuscation_key=None):
    """Returns {"header", "source", "descriptor", "weights_asm", "report"} texts and "weights" bytes.

    `weights_path` is how the assembler, run from the compiler's working directory, finds the
    weights blob (the `.incbin` path). With an `obfuscation_key` (bytes, see obfuscate.py) the
    blob is masked and shuffled, and the steps read the weights through pure_model::Masked views.

    With profile_steps, Run() times each step into the instance and the descriptor names the
    steps ("N: node name (Op)") for the profile tool; without it, nothing of that is emitted.
    """
    plan = memory.plan(graph)
    if plan.arena_bytes > ir.MAX_TOTAL_BYTES:
        raise CodegenError(f"the intermediate tensors need an arena of {plan.arena_bytes} bytes, more than the "
                           f"{ir.MAX_TOTAL_BYTES} (16 GiB) the generator supports")
    names = _Names()
    # Identifiers the templates use themselves.
    for reserved in ("arena_", "Run", class_name):
        names.take(reserved)

    def io_entry(name, kind, index):
        tensor = graph.tensor(name)
        base = cpp.camel_case(cpp.identifier(name))
        return dict(
            tensor=name, onnx_name=cpp.comment_text(name), name_literal=cpp.string_literal(name), index=index,
            kind=kind,
            dtype=ir.dtype_name(tensor.dtype),
            cpp_type=ir.cpp_type(tensor.dtype), shape=list(tensor.shape), elements=tensor.elements,
            bytes=tensor.nbytes, rank=len(tensor.shape), dtype_code=tensor.dtype,
            param=names.take(cpp.identifier(name).lower()),
            shape_const=names.take(f"k{base}Shape"), elements_const=names.take(f"k{base}Elements"),
        )

    inputs = [io_entry(n, "input", i) for i, n in enumerate(graph.inputs)]
    bound = [dict(onnx_name=cpp.comment_text(name), describe=tensor.describe(), values=_shown_values(tensor))
             for name, tensor in graph.bound_inputs.items()]
    outputs = [io_entry(n, "output", i) for i, n in enumerate(graph.outputs)]

    tensor_vars, activations = {}, []
    for entry in inputs:
        tensor_vars[entry["tensor"]] = entry["param"]
    for entry in outputs:
        tensor_vars.setdefault(entry["tensor"], entry["param"])
    for node in graph.nodes:
        for name in node.outputs:
            if not name or name in tensor_vars:
                continue
            tensor = graph.tensor(name)
            var = names.take(cpp.identifier(name).lower() + "_")
            tensor_vars[name] = var
            if name not in plan.alias_of:
                activations.append(dict(var=var, cpp_type=ir.cpp_type(tensor.dtype), offset=plan.storage[name].offset,
                                        tensor=name, onnx_name=cpp.comment_text(name), describe=tensor.describe()))
            else:  # a view: the same bytes as the tensor it renames
                root = plan.alias_of[name]
                const = "const " if plan.storage[root].kind in ("input", "constant") else ""
                activations.append(dict(var=var, cpp_type=const + ir.cpp_type(tensor.dtype), offset=None,
                                        source=root, tensor=name, onnx_name=cpp.comment_text(name),
                                        describe=tensor.describe()))

    ctx = EmitContext(graph, names, tensor_vars, plan, _Blob(blob_symbol_prefix(namespace, class_name), obfuscation_key))
    steps = []
    for number, node in enumerate(graph.nodes, start=1):
        if ctx.masked and node.op_type in _UNMASKED_KERNEL_OPS and any(
                n and graph.tensor(n).is_constant for n in node.inputs):
            raise CodegenError("obfuscate does not cover this op's constant inputs yet (its kernel reads them as "
                               "plain arrays); build this model without obfuscate", node=node)
        op = ops.lookup(node)
        if all(graph.tensor(name).elements == 0 for name in node.outputs if name):
            # Loops over nothing would only draw compiler warnings (`i < 0` on an unsigned).
            body = ["// Every output is empty: nothing to compute."]
        elif op.view and node.name not in plan.copies:
            body = [f"// A view of '{cpp.comment_text(node.inputs[0])}': no code."]
        elif op.view:
            tensor = graph.tensor(node.outputs[0])
            body = [ctx.copy(ctx.ptr(node.outputs[0]), ctx.ptr(node.inputs[0]), tensor.nbytes)]
        else:
            if op.emit is None:
                raise CodegenError(
                    "can only run at generation time (its inputs must be constants), but its inputs depend on "
                    "the model's inputs", node=node)
            try:
                body = op.emit(node, ctx)
            except CodegenError as e:
                e.node = e.node or node
                raise
        condition = control.guard_condition(node, ctx)
        if condition:
            body = [f"if ({condition}) {{"] + ["  " + line for line in body] + ["}"]
        steps.append(dict(number=number, comment=_describe_step(node, graph), body=body,
                          name_literal=cpp.string_literal(f"{number}: {node.name} ({node.op_type})")))
    final_copies = []
    for index, source in plan.extra_output_copies:
        entry = outputs[index]
        final_copies.append(dict(line=ctx.copy(entry["param"], ctx.ptr(source), entry["bytes"]),
                                 onnx_name=entry["onnx_name"]))
    if ctx.weight_bytes > ir.MAX_TOTAL_BYTES:
        raise CodegenError(f"the weights take {ctx.weight_bytes} bytes, more than the {ir.MAX_TOTAL_BYTES} (16 GiB) "
                           "the generator embeds")

    # A view that is used keeps the tensor it renames in use too.
    for name in sorted(ctx.used):
        if name in plan.alias_of:
            ctx.used.add(plan.alias_of[name])
    activations = [a for a in activations if a["tensor"] in ctx.used]
    # An input the model never reads (a dead branch) stays in Run()'s signature, used for nothing;
    # so does an output with no elements, which no step writes.
    unused_inputs = [entry["param"] for entry in inputs + outputs if entry["tensor"] not in ctx.used]
    for a in activations:
        if a["offset"] is None:
            a["source"] = ctx.ptr(a["source"])
    profile = None
    if profile_steps:
        # Taken last, so that profiling renames nothing the plain build emits.
        profile = dict(num_steps=len(steps), accumulators=names.take("profile_step_ns_"),
                       clock=names.take("profile_clock_"), lap=names.take("ProfileLap"),
                       count=names.take("kProfiledSteps"), method=names.take("StepTimes"))
    # From the same length-prefixed, case-kept parts as the blob's symbols: `a::b_c` and `a_b::c`
    # (or `a` and `A`) never share a guard, so one file can include both headers.
    guard = blob_symbol_prefix(namespace, class_name) + "_H_"
    common = dict(
        namespace=namespace, class_name=class_name, header_include=header_include,
        model_label=cpp.comment_text(model_label),
        inputs=inputs, outputs=outputs, arena_bytes=plan.arena_bytes, weight_bytes=ctx.weight_bytes, cpu=cpu,
        guard=guard, opsets=sorted(graph.opsets.items()), profile=profile, steps=steps,
        narrow_float_io=any(ir.is_storage(graph.tensor(e["tensor"]).dtype) for e in inputs + outputs),
        bound=bound,
    )
    blob = ctx.blob.layout()
    files = {
        "header": _template("model.h.mako").render(**common),
        "source": _template("model.cc.mako").render(
            weights=ctx.blob.entries, activations=activations, param_structs=ctx.param_structs,
            unused_inputs=unused_inputs,
            derived=ctx.derived, final_copies=final_copies, **common),
        "descriptor": _template("descriptor.cc.mako").render(**common),
        "weights_asm": _template("weights.S.mako").render(
            weights=ctx.blob.entries, blob_bytes=ctx.blob.size, weights_path=weights_path,
            base_label=".L" + blob_symbol_prefix(namespace, class_name) + "_weights", **common),
        "weights": blob,
    }
    files["report"] = report.to_json(report.build(
        graph, files, model_label=model_label, cpu=cpu, arena_bytes=plan.arena_bytes, weight_bytes=ctx.weight_bytes))
    return files
