#!/usr/bin/env python3
"""Writes the engine's parity-suite vision models as ONNX, with seeded random weights.

Why random weights: the parity suite checks that Cloister computes what onnxruntime computes
on the same graph; trained weights add nothing to that and would need torch. He-initialised
weights keep activations at a realistic scale through every layer. Each graph is laid out as
torch's exporter lays out the equivalent nn.Module at opset 17.

  mlp     MLP 784-512-512-10: MatMul+Add, Relu                  input [N, 784]
  lenet5  LeNet-5: Conv 5x5 (pad 2) -> Relu -> MaxPool, Conv 5x5 -> Relu -> MaxPool,
          Flatten, Gemm 400-120-84-10 with Relu                 input [N, 1, 28, 28]
  resnet  a small ResNet: stem Conv 3x3 + BatchNormalization + Relu, two basic blocks at 16
          channels (identity residual Add), one at 32 with stride 2 and a 1x1 Conv +
          BatchNormalization projection shortcut, GlobalAveragePool, Flatten, Gemm
                                                                input [N, 3, 32, 32]

Every model: one float32 input `input` with a symbolic batch `N`, one output `logits` [N, 10].

Usage: export_parity_models.py --out DIR     writes DIR/{mlp,lenet5,resnet}/model.onnx
Deterministic (numpy's PCG64 with fixed seeds): reruns are byte-identical.
"""

import argparse
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


class Graph:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes = []
        self.inits = []

    def param(self, name: str, arr) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name))
        return name

    def he(self, name: str, shape, fan_in: int) -> str:
        return self.param(name, self.rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape))

    def bias(self, name: str, n: int) -> str:
        return self.param(name, self.rng.uniform(-0.1, 0.1, size=n))

    def op(self, op_type: str, inputs, out: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=f"/{out}/{op_type}", **attrs))
        return out

    def conv(self, x: str, name: str, cin: int, cout: int, k: int, stride=1, pad=0, bias=True) -> str:
        w = self.he(f"{name}.weight", (cout, cin, k, k), cin * k * k)
        inputs = [x, w] + ([self.bias(f"{name}.bias", cout)] if bias else [])
        return self.op("Conv", inputs, name, kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4)

    def batch_norm(self, x: str, name: str, c: int) -> str:
        g = self.param(f"{name}.weight", self.rng.uniform(0.5, 1.5, size=c))
        b = self.param(f"{name}.bias", self.rng.uniform(-0.2, 0.2, size=c))
        mean = self.param(f"{name}.running_mean", self.rng.normal(0.0, 0.2, size=c))
        var = self.param(f"{name}.running_var", self.rng.uniform(0.5, 2.0, size=c))
        return self.op("BatchNormalization", [x, g, b, mean, var], name, epsilon=1e-5, momentum=0.9)

    def gemm(self, x: str, name: str, fin: int, fout: int) -> str:
        # nn.Linear exports as Gemm(transB=1) with the weight stored [out, in].
        w = self.he(f"{name}.weight", (fout, fin), fin)
        return self.op("Gemm", [x, w, self.bias(f"{name}.bias", fout)], name, alpha=1.0, beta=1.0, transB=1)

    def linear_matmul(self, x: str, name: str, fin: int, fout: int) -> str:
        # A Linear on a tensor of rank other than 2 (or torch.dynamo's exporter): MatMul + Add.
        w = self.he(f"{name}.weight_T", (fin, fout), fin)
        mm = self.op("MatMul", [x, w], f"{name}/MatMul")
        return self.op("Add", [mm, self.bias(f"{name}.bias", fout)], name)

    def model(self, name: str, input_shape, x_out: str) -> onnx.ModelProto:
        g = helper.make_graph(
            self.nodes,
            name,
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *input_shape])],
            [helper.make_tensor_value_info(x_out, TensorProto.FLOAT, ["N", 10])],
            self.inits,
        )
        m = helper.make_model(
            g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="cloister-export-parity", producer_version="1"
        )
        m.ir_version = 8
        onnx.checker.check_model(m, full_check=True)
        return m


def mlp() -> onnx.ModelProto:
    g = Graph(seed=784)
    x = g.op("Relu", [g.linear_matmul("input", "fc1", 784, 512)], "relu1")
    x = g.op("Relu", [g.linear_matmul(x, "fc2", 512, 512)], "relu2")
    g.linear_matmul(x, "logits", 512, 10)
    return g.model("mlp-784-512-512-10", [784], "logits")


def lenet5() -> onnx.ModelProto:
    g = Graph(seed=5)
    x = g.op("Relu", [g.conv("input", "conv1", 1, 6, 5, pad=2)], "relu1")
    x = g.op("MaxPool", [x], "pool1", kernel_shape=[2, 2], strides=[2, 2])
    x = g.op("Relu", [g.conv(x, "conv2", 6, 16, 5)], "relu2")
    x = g.op("MaxPool", [x], "pool2", kernel_shape=[2, 2], strides=[2, 2])
    x = g.op("Flatten", [x], "flatten", axis=1)
    x = g.op("Relu", [g.gemm(x, "fc1", 400, 120)], "relu3")
    x = g.op("Relu", [g.gemm(x, "fc2", 120, 84)], "relu4")
    g.gemm(x, "logits", 84, 10)
    return g.model("lenet5", [1, 28, 28], "logits")


def resnet() -> onnx.ModelProto:
    g = Graph(seed=18)

    def block(x: str, name: str, cin: int, cout: int, stride: int) -> str:
        y = g.conv(x, f"{name}.conv1", cin, cout, 3, stride=stride, pad=1, bias=False)
        y = g.op("Relu", [g.batch_norm(y, f"{name}.bn1", cout)], f"{name}.relu1")
        y = g.conv(y, f"{name}.conv2", cout, cout, 3, pad=1, bias=False)
        y = g.batch_norm(y, f"{name}.bn2", cout)
        if stride != 1 or cin != cout:
            s = g.conv(x, f"{name}.downsample.0", cin, cout, 1, stride=stride, bias=False)
            x = g.batch_norm(s, f"{name}.downsample.1", cout)
        return g.op("Relu", [g.op("Add", [y, x], f"{name}.add")], f"{name}.relu2")

    x = g.conv("input", "stem.conv", 3, 16, 3, pad=1, bias=False)
    x = g.op("Relu", [g.batch_norm(x, "stem.bn", 16)], "stem.relu")
    x = block(x, "layer1.0", 16, 16, 1)
    x = block(x, "layer1.1", 16, 16, 1)
    x = block(x, "layer2.0", 16, 32, 2)
    x = g.op("GlobalAveragePool", [x], "avgpool")
    x = g.op("Flatten", [x], "flatten", axis=1)
    g.gemm(x, "logits", 32, 10)
    return g.model("resnet-small", [3, 32, 32], "logits")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="output directory")
    args = ap.parse_args()
    for name, make in (("mlp", mlp), ("lenet5", lenet5), ("resnet", resnet)):
        d = args.out / name
        d.mkdir(parents=True, exist_ok=True)
        m = make()
        (d / "model.onnx").write_bytes(m.SerializeToString())
        print(f"wrote {d / 'model.onnx'} ({len(m.graph.node)} nodes)")


if __name__ == "__main__":
    main()
