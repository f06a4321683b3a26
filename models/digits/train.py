"""Train the Cloister demo model (digits MLP) and export it to ONNX.

Produces, next to this file:
  digits.onnx   - one input `input` [N, 64] float32, one output `probabilities` [N, 10] float32
  heldout.json  - the held-out test rows, their labels and onnxruntime's probabilities,
                  so the Rust engine can check parity without Python.

Deterministic: fixed split and model seeds. Regenerate with
    pip install -r requirements.txt && python3 train.py
"""

import json
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

HERE = os.path.dirname(os.path.abspath(__file__))
INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"


def train():
    digits = load_digits()
    x = digits.data.astype(np.float32)  # pixel values 0..16, 64 features
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, stratify=y, random_state=0
    )
    clf = MLPClassifier(
        hidden_layer_sizes=(64,), activation="relu", max_iter=500, random_state=0
    )
    clf.fit(x_train, y_train)
    return clf, x_test, y_test


def export(clf):
    onx = to_onnx(
        clf,
        initial_types=[("X", FloatTensorType([None, 64]))],
        options={id(clf): {"zipmap": False}},
        target_opset=13,
    )
    graph = onx.graph
    prob_outputs = [o for o in graph.output if o.name != "label"]
    assert len(prob_outputs) == 1, [o.name for o in graph.output]
    old_prob, old_in = prob_outputs[0].name, graph.input[0].name

    # Keep only the nodes the probabilities output needs.
    needed, keep = {old_prob}, []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
    keep.reverse()

    def rename(name):
        return {old_in: INPUT_NAME, old_prob: OUTPUT_NAME}.get(name, name)

    for node in keep:
        node.input[:] = [rename(n) for n in node.input]
        node.output[:] = [rename(n) for n in node.output]
    del graph.node[:]
    graph.node.extend(keep)
    used = {i for n in keep for i in n.input}
    inits = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(inits)

    new_input = helper.make_tensor_value_info(INPUT_NAME, onnx.TensorProto.FLOAT, ["N", 64])
    new_output = helper.make_tensor_value_info(OUTPUT_NAME, onnx.TensorProto.FLOAT, ["N", 10])
    del graph.input[:]
    graph.input.append(new_input)
    del graph.output[:]
    graph.output.append(new_output)
    # Drop opset imports no remaining node uses (e.g. ai.onnx.ml).
    domains = {n.domain for n in keep}
    kept_opsets = [o for o in onx.opset_import if o.domain in domains or o.domain in ("", "ai.onnx")]
    del onx.opset_import[:]
    onx.opset_import.extend(kept_opsets)
    onx.graph.name = "digits_mlp"
    onx.doc_string = "Cloister demo: sklearn MLPClassifier on load_digits"
    onnx.checker.check_model(onx, full_check=True)
    return onx


def main():
    clf, x_test, y_test = train()
    onx = export(clf)
    path = os.path.join(HERE, "digits.onnx")
    with open(path, "wb") as f:
        f.write(onx.SerializeToString())

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (ort_prob,) = sess.run([OUTPUT_NAME], {INPUT_NAME: x_test})
    skl_prob = clf.predict_proba(x_test)
    ort_acc = float((ort_prob.argmax(1) == y_test).mean())
    skl_acc = float((clf.predict(x_test) == y_test).mean())
    max_diff = float(np.abs(ort_prob - skl_prob).max())
    agree = float((ort_prob.argmax(1) == skl_prob.argmax(1)).mean())

    with open(os.path.join(HERE, "heldout.json"), "w") as f:
        json.dump(
            {
                "input": x_test.tolist(),
                "labels": y_test.tolist(),
                "onnxruntime_probabilities": ort_prob.astype(np.float32).tolist(),
            },
            f,
        )
    print(f"nodes: {[n.op_type for n in onx.graph.node]}")
    print(f"opsets: {[(o.domain, o.version) for o in onx.opset_import]}")
    print(f"test rows: {len(y_test)}")
    print(f"sklearn accuracy: {skl_acc:.4f}")
    print(f"onnxruntime accuracy: {ort_acc:.4f}")
    print(f"argmax agreement ort vs sklearn: {agree:.4f}")
    print(f"max |ort - sklearn| probability: {max_diff:.3e}")
    print(f"digits.onnx size: {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
