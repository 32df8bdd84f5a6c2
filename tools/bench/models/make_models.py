"""Writes the benchmark's standard-architecture models: `python3 tools/bench/models/make_models.py`.

Two ImageNet-shaped classifiers, written here from their papers (no torchvision), exported with
torch's TorchScript-based ONNX exporter (opset 17, constant folding, eval mode, so every
BatchNormalization folds into the Conv before it):

  mobilenetv2  MobileNetV2 (Sandler et al. 2018), width 1.0: inverted residual blocks of
               1x1 expand / 3x3 depthwise / 1x1 linear projection, ReLU6 (Clip).
  resnet18     ResNet-18 (He et al. 2015): 7x7 stem, max pool, 4 stages of 2 basic blocks.

Both take `image` float32[1,3,224,224] and return `logits` float32[1,1000].

Only the graphs are checked in. The weights (14 MB and 47 MB) are not: every large float
initializer is stored without data, with the mean and standard deviation of the exported
values in its doc_string, and `fill_weights.py` draws them again from a seeded generator at
build time (`:<name>_onnx` in BUILD.bazel). That keeps the repository small and the models
reproducible without torch, which the build does not have.

Needs torch (CPU), onnx and, for the check at the end, onnxruntime. Random weights, fixed seed:
the models are for timing, not for predictions. The initialisation (He-normal, randomised
BatchNorm statistics) keeps activations O(1) through every layer, so no run spends its time on
denormal numbers; the script checks that on the filled model with onnxruntime.
"""

import argparse
import io
import os
import sys

import numpy as np
import onnx
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fill_weights  # noqa: E402

OPSET = 17
IR_VERSION = 9  # ONNX Runtime 1.23 reads IR versions up to 10; the brief caps us at 10.
SEED = 0
# Initializers at least this large are stored as statistics only; smaller ones (biases, shape
# constants, Clip bounds) keep their exact values.
STRIP_MIN_ELEMENTS = 1024


def _conv_bn(cin, cout, kernel, stride, groups=1, act=None):
    layers = [
        nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        self.use_residual = stride == 1 and cin == cout
        layers = []
        if expand != 1:
            layers.append(_conv_bn(cin, hidden, 1, 1, act=nn.ReLU6))
        layers.append(_conv_bn(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6))
        layers.append(_conv_bn(hidden, cout, 1, 1))  # linear bottleneck: no activation
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        y = self.body(x)
        return x + y if self.use_residual else y


class MobileNetV2(nn.Module):
    # (expansion t, output channels c, repeats n, first stride s), Table 2 of the paper.
    SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1)]

    def __init__(self, classes=1000):
        super().__init__()
        layers = [_conv_bn(3, 32, 3, 2, act=nn.ReLU6)]
        cin = 32
        for t, c, n, s in self.SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(_conv_bn(cin, 1280, 1, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(1280, classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = _conv_bn(cin, cout, 3, stride, act=nn.ReLU)
        self.conv2 = _conv_bn(cout, cout, 3, 1)
        self.shortcut = _conv_bn(cin, cout, 1, stride) if stride != 1 or cin != cout else None
        self.relu = nn.ReLU()

    def forward(self, x):
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.relu(self.conv2(self.conv1(x)) + identity)


class ResNet18(nn.Module):
    def __init__(self, classes=1000):
        super().__init__()
        self.stem = nn.Sequential(_conv_bn(3, 64, 7, 2, act=nn.ReLU), nn.MaxPool2d(3, 2, 1))
        blocks = []
        cin = 64
        for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            blocks += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


def _initialise(model, generator):
    """He-normal convolutions and randomised BatchNorm statistics (as a trained network has),
    scaled so that activations neither vanish nor explode: a residual branch's last BN starts
    small, as in "Bag of Tricks" zero-gamma init, but not zero, so every layer does real work."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            fan_in = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            with torch.no_grad():
                module.weight.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=generator)
        elif isinstance(module, nn.BatchNorm2d):
            with torch.no_grad():
                module.weight.uniform_(0.7, 1.3, generator=generator)
                module.bias.uniform_(-0.1, 0.1, generator=generator)
                module.running_mean.uniform_(-0.1, 0.1, generator=generator)
                module.running_var.uniform_(0.7, 1.3, generator=generator)
        elif isinstance(module, nn.Linear):
            with torch.no_grad():
                module.weight.normal_(0.0, (1.0 / module.in_features) ** 0.5, generator=generator)
                module.bias.uniform_(-0.1, 0.1, generator=generator)
    for module in model.modules():
        if isinstance(module, BasicBlock):
            with torch.no_grad():
                module.conv2[1].weight.mul_(0.5)


def export(model, name):
    generator = torch.Generator().manual_seed(SEED)
    _initialise(model, generator)
    model.eval()
    buffer = io.BytesIO()
    torch.onnx.export(
        model, (torch.zeros(1, 3, 224, 224),), buffer,
        dynamo=False,
        opset_version=OPSET,
        do_constant_folding=True,
        input_names=["image"],
        output_names=["logits"],
    )
    exported = onnx.load_from_string(buffer.getvalue())
    exported.ir_version = IR_VERSION
    exported.producer_name = "rules_pure_model tools/bench (torch %s)" % torch.__version__.split("+")[0]
    exported.graph.name = name
    return exported


def strip_weights(model):
    """Replaces the data of every large float initializer by its statistics."""
    stripped = onnx.ModelProto()
    stripped.CopyFrom(model)
    for init in stripped.graph.initializer:
        values = onnx.numpy_helper.to_array(init)
        if init.data_type != onnx.TensorProto.FLOAT or values.size < STRIP_MIN_ELEMENTS:
            continue
        fill_weights.set_statistics(init, float(values.mean()), float(values.std()))
    return stripped


def check_activations(model, name):
    """Runs the filled model with onnxruntime, every intermediate tensor exposed, and fails if
    any is non-finite or holds denormal numbers (which would slow both runtimes down)."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    for node in probe.graph.node:
        for out in node.output:
            if out not in known:
                probe.graph.output.add().name = out
                known.add(out)
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(SEED).uniform(-1, 1, (1, 3, 224, 224)).astype(np.float32)
    names = [o.name for o in session.get_outputs()]
    worst = 0.0
    for tensor_name, value in zip(names, session.run(None, {"image": x})):
        if value.dtype != np.float32:
            continue
        if not np.all(np.isfinite(value)):
            raise SystemExit(f"{name}: {tensor_name} is not finite")
        tiny = np.count_nonzero((value != 0) & (np.abs(value) < np.finfo(np.float32).tiny))
        if tiny:
            raise SystemExit(f"{name}: {tensor_name} has {tiny} denormal values")
        worst = max(worst, float(np.abs(value).max()))
    ops = sorted({n.op_type for n in model.graph.node})
    print(f"{name}: {len(model.graph.node)} nodes, ops {', '.join(ops)}; "
          f"activations finite, no denormals, largest |value| {worst:.3g}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out_dir", default=os.path.dirname(os.path.abspath(__file__)))
    parser.add_argument("--check", action="store_true", help="also fill and check activations")
    args = parser.parse_args()
    torch.manual_seed(SEED)
    for name, model in [("mobilenetv2", MobileNetV2()), ("resnet18", ResNet18())]:
        graph = strip_weights(export(model, name))
        path = os.path.join(args.out_dir, name + "_graph.onnx")
        onnx.save(graph, path)
        print(f"wrote {path} ({os.path.getsize(path)} bytes)")
        if args.check:
            check_activations(fill_weights.fill(graph), name)


if __name__ == "__main__":
    main()
