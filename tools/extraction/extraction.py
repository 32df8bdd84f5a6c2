"""Plays the attacker: what of an ONNX model can be recovered from the files that ship with an app?

Three searches over the shipped bytes (binaries, shared libraries, data files):

- Weights. Every initializer is looked for in every order of its dimensions (an attacker does not
  know the layout a kernel wants), as runs of WINDOW_BYTES consecutive bytes of that order,
  starting at any element and found at any byte offset. An element counts as recovered when some
  window that covers it is found (orders are probed first, see PROBE_WINDOWS). Windows whose elements are all equal (zeros, constant biases)
  say nothing about the model and are not counted either way.
- Names. Graph, node, tensor and metadata names, doc strings, the producer, looked for as exact
  byte strings. Names shorter than MIN_NAME_LENGTH are skipped: "x" or "y" occur in any binary.
- ONNX signatures. Runs of the serialized model file itself (any CHUNK_BYTES piece of it outside
  the tensors' raw data), the strings a protobuf-serialized ONNX model always carries
  ("ai.onnx", the producer), and the file's opening bytes.

Matching uses hashes of fixed-size windows (numpy over every byte offset), so a 50 MB binary and a
model of millions of weights take seconds.
"""

import dataclasses
import itertools

import numpy as np
import onnx
from onnx import numpy_helper

WINDOW_BYTES = 16
MIN_NAME_LENGTH = 4
CHUNK_BYTES = 64
# A tensor counts as recovered when at least this share of its informative elements is found.
RECOVERED_SHARE = 0.5
# Dimension orders tried per tensor: all of them up to rank 4 (24), beyond that the identity and
# the reversal (rank-5+ weights are rare and 120+ orders would dominate the run time).
MAX_FULL_PERMUTATION_RANK = 4
# Tensors this small carry too little to match on their own.
MIN_TENSOR_ELEMENTS = 8
# Each dimension order is first probed with this many evenly spread windows, and searched in full
# only when one of them is found: a clean binary then costs little per order. A share below
# about 2% of a tensor could hide between the probes; that is below anything worth reporting.
PROBE_WINDOWS = 256

_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_PREFILTER_BITS = 27


def _window_hashes(data, stride, count):
    """Hashes of the WINDOW_BYTES-byte windows starting at 0, stride, 2*stride, ... (count of them)."""
    low = np.ndarray((count,), dtype="<u8", buffer=data, offset=0, strides=(stride,))
    high = np.ndarray((count,), dtype="<u8", buffer=data, offset=8, strides=(stride,))
    with np.errstate(over="ignore"):
        return low * _MULTIPLIER ^ high


class Haystack:
    """The shipped bytes, indexed by the hash of every WINDOW_BYTES window at every byte offset."""

    def __init__(self, blobs):
        # Files are searched separately: a window that straddles two files is no finding.
        self.blobs = [bytes(b) for b in blobs]
        hashes = [_window_hashes(b, 1, len(b) - WINDOW_BYTES + 1) for b in self.blobs if len(b) >= WINDOW_BYTES]
        # Sorted, duplicates kept: binary search does not mind them, and np.unique is far slower.
        self.hashes = np.sort(np.concatenate(hashes)) if hashes else np.zeros(0, np.uint64)
        self.total_bytes = sum(len(b) for b in self.blobs)
        # A direct-mapped table of hash prefixes answers most lookups with one memory access;
        # only its hits are confirmed by binary search in the sorted hashes.
        self._prefilter = np.zeros(1 << _PREFILTER_BITS, bool)
        self._prefilter[self.hashes >> np.uint64(64 - _PREFILTER_BITS)] = True

    def contains_windows(self, hashes):
        result = self._prefilter[hashes >> np.uint64(64 - _PREFILTER_BITS)]
        candidates = np.flatnonzero(result)
        if len(candidates):
            wanted = hashes[candidates]
            positions = np.minimum(np.searchsorted(self.hashes, wanted), len(self.hashes) - 1)
            result[candidates] = self.hashes[positions] == wanted
        return result

    def contains_bytes(self, needle):
        return any(needle in blob for blob in self.blobs)


def _dimension_orders(rank):
    if rank <= MAX_FULL_PERMUTATION_RANK:
        return list(itertools.permutations(range(rank)))
    return [tuple(range(rank)), tuple(reversed(range(rank)))]


@dataclasses.dataclass
class TensorFinding:
    name: str
    shape: tuple
    dtype: str
    informative_elements: int
    recovered_elements: int
    best_order: tuple

    @property
    def share(self):
        return self.recovered_elements / self.informative_elements if self.informative_elements else 0.0

    @property
    def recovered(self):
        return self.informative_elements > 0 and self.share >= RECOVERED_SHARE


def search_tensor(haystack, name, array):
    """How much of `array` the haystack holds, in the best of its dimension orders."""
    array = np.ascontiguousarray(array)
    itemsize = array.dtype.itemsize
    per_window = max(1, WINDOW_BYTES // itemsize)
    best = None
    if itemsize not in (1, 2, 4, 8):
        return TensorFinding(name, tuple(array.shape), str(array.dtype), 0, 0, ())
    for order in _dimension_orders(array.ndim):
        flat = np.ascontiguousarray(array.transpose(order)).reshape(-1)
        count = flat.size - per_window + 1
        if count <= 0:
            break
        data = flat.tobytes()
        # A window whose elements are all equal is uninformative: it is neither evidence for
        # nor against, whichever side it is on.
        raw = flat.view(np.dtype(f"u{itemsize}"))
        windows = np.lib.stride_tricks.sliding_window_view(raw, per_window)
        informative = ~(windows == windows[:, :1]).all(axis=1)
        counted = np.zeros(flat.size, bool)
        for offset in range(per_window):
            counted[offset:offset + count] |= informative
        covered = np.zeros(flat.size, bool)
        step = max(1, count // PROBE_WINDOWS)
        probe = np.zeros(count, bool)
        probe[::step] = True
        # Probing only informative windows: zeros match the zeros any binary is full of.
        probe &= informative
        hashes = _window_hashes(data, itemsize, count)
        if probe.any() and haystack.contains_windows(hashes[probe]).any():
            found = haystack.contains_windows(hashes)
            for offset in range(per_window):
                covered[offset:offset + count] |= found & informative
        finding = TensorFinding(name, tuple(array.shape), str(array.dtype), int(counted.sum()),
                                int((covered & counted).sum()), order)
        if best is None or finding.recovered_elements > best.recovered_elements:
            best = finding
        if best.informative_elements and best.recovered_elements == best.informative_elements:
            break
    if best is None:
        best = TensorFinding(name, tuple(array.shape), str(array.dtype), 0, 0, ())
    return best


def model_weights(model):
    """(name, array) for every initializer big enough to be worth stealing, constants included."""
    found = []
    for tensor in model.graph.initializer:
        found.append((tensor.name, numpy_helper.to_array(tensor)))
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    found.append((node.output[0], numpy_helper.to_array(attribute.t)))
    return [(n, a) for n, a in found if a.size >= MIN_TENSOR_ELEMENTS and a.dtype.kind in "fiub"]


def model_names(model):
    """Every name and free text in the model an attacker could look for, by kind."""
    graph = model.graph
    names = {
        "graph": [graph.name],
        "node": [n.name for n in graph.node],
        "tensor": [v.name for v in itertools.chain(graph.input, graph.output, graph.value_info)]
                  + [t.name for t in graph.initializer] + [o for n in graph.node for o in n.output],
        "text": [model.producer_name, model.producer_version, model.doc_string, graph.doc_string]
                + [p.key for p in model.metadata_props] + [p.value for p in model.metadata_props]
                + [n.doc_string for n in graph.node],
    }
    return {kind: sorted({n for n in values if len(n) >= MIN_NAME_LENGTH}) for kind, values in names.items()}


def _model_chunks(model_bytes, model):
    """CHUNK_BYTES pieces of the serialized model that are structure, not weight data."""
    raw_pieces = [t.raw_data for t in model.graph.initializer if len(t.raw_data) >= CHUNK_BYTES]
    raw_ranges = []
    for piece in raw_pieces:
        start = model_bytes.find(piece)
        if start >= 0:
            raw_ranges.append((start, start + len(piece)))
    starts = np.arange(0, len(model_bytes) - CHUNK_BYTES + 1, CHUNK_BYTES)
    structural = np.ones(len(starts), bool)
    for lo, hi in raw_ranges:
        structural &= ~((lo < starts + CHUNK_BYTES) & (starts < hi))
    return [model_bytes[start:start + CHUNK_BYTES] for start in starts[structural]]


@dataclasses.dataclass
class Report:
    artifact: str
    artifact_bytes: int
    tensors: list
    names_found: dict
    names_total: dict
    structure_chunks_found: int
    structure_chunks_total: int
    signatures_found: list

    @property
    def weight_tensors(self):
        return len(self.tensors)

    @property
    def tensors_recovered(self):
        return sum(t.recovered for t in self.tensors)

    @property
    def weight_share(self):
        total = sum(t.informative_elements for t in self.tensors)
        return sum(t.recovered_elements for t in self.tensors) / total if total else 0.0

    @property
    def names_recovered(self):
        return sum(len(v) for v in self.names_found.values())

    @property
    def names_searched(self):
        return sum(self.names_total.values())

    def clean(self):
        """Nothing of the model recognisable: no tensor, name, structure or signature."""
        return not (self.tensors_recovered or self.names_recovered or self.structure_chunks_found
                    or self.signatures_found)

    def to_json(self):
        return {
            "artifact": self.artifact,
            "artifact_bytes": self.artifact_bytes,
            "weight_tensors": self.weight_tensors,
            "weight_tensors_recovered": self.tensors_recovered,
            "weight_elements_recovered_share": round(self.weight_share, 6),
            "tensors": [dict(name=t.name, shape=list(t.shape), dtype=t.dtype, share=round(t.share, 6),
                             best_order=list(t.best_order)) for t in self.tensors if t.recovered_elements],
            "names_recovered": {k: v for k, v in self.names_found.items() if v},
            "names_searched": self.names_total,
            "structure_chunks_found": self.structure_chunks_found,
            "structure_chunks_total": self.structure_chunks_total,
            "signatures_found": self.signatures_found,
        }

    def summary(self):
        return (f"{self.artifact}: weights {self.tensors_recovered}/{self.weight_tensors} tensors "
                f"({self.weight_share:.1%} of elements); names {self.names_recovered}/{self.names_searched}; "
                f"model structure {self.structure_chunks_found}/{self.structure_chunks_total} chunks; "
                f"signatures {', '.join(self.signatures_found) or 'none'}")


def attack(model_path, artifact_label, blobs):
    """Searches `blobs` (the bytes of every shipped file) for the model at `model_path`."""
    with open(model_path, "rb") as f:
        model_bytes = f.read()
    model = onnx.load_from_string(model_bytes)
    haystack = Haystack(blobs)

    # Constant tensors (all zeros, all ones) have nothing to recover and are left out of the count.
    tensors = [f for f in (search_tensor(haystack, n, a) for n, a in model_weights(model)) if f.informative_elements]

    names = model_names(model)
    names_found = {kind: [n for n in values if haystack.contains_bytes(n.encode())] for kind, values in names.items()}

    chunks = _model_chunks(model_bytes, model)
    chunks_found = sum(haystack.contains_bytes(c) for c in chunks)

    signatures = []
    opening = model_bytes[:WINDOW_BYTES]
    if haystack.contains_bytes(opening):
        signatures.append("model file opening bytes")
    for text in ("ai.onnx", "onnx.ModelProto", model.producer_name):
        if text and len(text) >= MIN_NAME_LENGTH and haystack.contains_bytes(text.encode()):
            signatures.append(f"'{text}'")

    return Report(artifact_label, haystack.total_bytes, tensors, names_found,
                  {k: len(v) for k, v in names.items()}, chunks_found, len(chunks), signatures)


def markdown_table(rows):
    """rows: [(model, deployment, Report)] -> a Markdown table for the README."""
    lines = [
        "| model | deployment | shipped bytes | weight tensors recovered | weight elements recovered "
        "| names recovered | model file pieces | ONNX signatures |",
        "|---|---|--:|--:|--:|--:|--:|---|",
    ]
    for model, deployment, report in rows:
        lines.append(
            f"| {model} | {deployment} | {report.artifact_bytes:,} | {report.tensors_recovered} of "
            f"{report.weight_tensors} | {report.weight_share:.1%} | {report.names_recovered} of "
            f"{report.names_searched} | {report.structure_chunks_found} of {report.structure_chunks_total} | "
            f"{', '.join(report.signatures_found) or 'none'} |")
    return "\n".join(lines)
