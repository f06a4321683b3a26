"""Train the PATE teacher ensemble for Cloister's differential-privacy demo.

K logistic-regression teachers, each trained on its own disjoint partition of scikit-learn's
bundled digits training split (the same stratified 80/20 split, random_state=0, as
models/digits). One training record therefore influences exactly one teacher, which is what
the enclave's noisy arg-max accounting assumes.

The ONNX graph has input `input` [N, 64] float32 and output `votes` [N, K] int64: every
teacher's predicted class, computed as one Gemm over the stacked weights, a Reshape to
[N, K, 10] and an ArgMax. The enclave counts the votes and releases a noisy arg-max.

Writes digits-ensemble.onnx and heldout-votes.json (held-out votes from onnxruntime and from
scikit-learn, which must agree, plus the labels), and prints teacher and plurality accuracy.
"""

import json
import pathlib

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

K = 25
CLASSES = 10
HERE = pathlib.Path(__file__).resolve().parent


def main() -> None:
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, stratify=y, random_state=0
    )
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x_train))
    parts = np.array_split(order, K)
    weights, biases, teachers = [], [], []
    for k, idx in enumerate(parts):
        clf = LogisticRegression(max_iter=2000, C=1.0, random_state=k)
        clf.fit(x_train[idx], y_train[idx])
        # A partition may lack a class; expand to all 10 classes with -inf-like bias.
        w = np.zeros((CLASSES, 64), dtype=np.float32)
        b = np.full(CLASSES, -1e9, dtype=np.float32)
        for j, c in enumerate(clf.classes_):
            if len(clf.classes_) == 2:
                raise SystemExit("binary partition: increase partition size")
            w[c] = clf.coef_[j]
            b[c] = clf.intercept_[j]
        weights.append(w)
        biases.append(b)
        teachers.append(clf)

    w_all = np.concatenate(weights, axis=0).T.astype(np.float32)  # [64, K*10]
    b_all = np.concatenate(biases, axis=0).astype(np.float32)  # [K*10]
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["input", "W", "B"], ["scores"]),
            helper.make_node("Reshape", ["scores", "shape"], ["per_teacher"]),
            helper.make_node("ArgMax", ["per_teacher"], ["votes"], axis=2, keepdims=0),
        ],
        "digits_ensemble",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("votes", TensorProto.INT64, ["N", K])],
        initializer=[
            numpy_helper.from_array(w_all, "W"),
            numpy_helper.from_array(b_all, "B"),
            numpy_helper.from_array(np.array([-1, K, CLASSES], dtype=np.int64), "shape"),
        ],
    )
    model = helper.make_model(
        graph,
        producer_name="cloister models/digits-ensemble/train.py",
        opset_imports=[helper.make_opsetid("", 13)],
    )
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    out = HERE / "digits-ensemble.onnx"
    out.write_bytes(model.SerializeToString())

    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    votes = sess.run(["votes"], {"input": x_test.astype(np.float32)})[0]
    sk_votes = np.stack([t.predict(x_test) for t in teachers], axis=1)
    agree = float((votes == sk_votes).mean())
    teacher_acc = [float((sk_votes[:, k] == y_test).mean()) for k in range(K)]
    plurality = np.array([np.bincount(v, minlength=CLASSES).argmax() for v in votes])
    plurality_acc = float((plurality == y_test).mean())
    print(f"teachers: {K}, rows per teacher: {len(parts[0])}-{len(parts[-1])}")
    print(f"teacher accuracy: mean {np.mean(teacher_acc):.4f}, min {min(teacher_acc):.4f}")
    print(f"plurality-vote accuracy (no noise): {plurality_acc:.4f}")
    print(f"onnxruntime vs scikit-learn vote agreement: {agree:.4f}")
    assert agree == 1.0
    (HERE / "heldout-votes.json").write_text(
        json.dumps(
            {
                "teachers": K,
                "labels": y_test.tolist(),
                "onnxruntime_votes": votes.tolist(),
                "plurality_accuracy": plurality_acc,
            }
        )
    )


if __name__ == "__main__":
    main()
