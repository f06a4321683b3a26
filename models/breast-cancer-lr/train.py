"""Train and quantize the breast-cancer logistic regression for Cloister's homomorphic mode.

Produces, next to this file:
  program.json  - the integer program `cloister-he` evaluates on TFHE ciphertexts
  heldout.json  - the held-out rows (raw features) and labels
  metrics.json  - float and quantized-plaintext accuracy on the held-out rows
  model.onnx    - the same float model as ONNX (Sub mean, Div std, Gemm, Sigmoid), the input
                  of `cloister he compile` (written with the onnx package's helper API)
  calibration.json - the training rows (raw features) and labels, the calibration data for
                  `cloister he compile` (never the held-out rows)

Data: scikit-learn `load_breast_cancer` (569 rows, 30 features), stratified 80/20 split,
random_state=0. Model: StandardScaler + LogisticRegression, C chosen by 5-fold
cross-validation on the training rows only (never on the held-out rows). Post-training quantization like
Concrete ML's 8-bit setting: each standardized feature to a signed 8-bit integer
q = clamp(round((x - mean) / (std * S_IN)), -128, 127), weights to signed 8-bit integers
round(coef * S_IN * K) with K chosen so max |w| = 127, bias round(intercept * K).
score = b + sum w*q (exact); class 1 (benign in sklearn's coding) iff score > 0.

Deterministic. Regenerate with
    pip install -r requirements.txt && python3 train.py
"""

import json
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

HERE = os.path.dirname(os.path.abspath(__file__))
QMIN, QMAX = -128, 127
WMAX = 127
CLIP_SIGMAS = 4.0  # standardized values beyond +-4 sigma saturate
OUTPUT_BITS = 24
CS = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0]


def write_onnx(path, mean, std, coef, intercept):
    """StandardScaler + LogisticRegression as plain ONNX ops, float32, opset 13."""
    f = len(mean)
    inits = [
        numpy_helper.from_array(np.asarray(mean, np.float32), "mean"),
        numpy_helper.from_array(np.asarray(std, np.float32), "std"),
        numpy_helper.from_array(np.asarray(coef, np.float32).reshape(1, f), "coef"),
        numpy_helper.from_array(np.asarray([intercept], np.float32), "intercept"),
    ]
    nodes = [
        helper.make_node("Sub", ["input", "mean"], ["centred"], name="scaler_sub"),
        helper.make_node("Div", ["centred", "std"], ["scaled"], name="scaler_div"),
        helper.make_node(
            "Gemm", ["scaled", "coef", "intercept"], ["logit"], name="linear", transB=1
        ),
        helper.make_node("Sigmoid", ["logit"], ["probability"], name="sigmoid"),
    ]
    graph = helper.make_graph(
        nodes,
        "breast_cancer_lr",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", f])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["N", 1])],
        inits,
    )
    model = helper.make_model(
        graph, producer_name="cloister train.py", opset_imports=[helper.make_opsetid("", 13)]
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def main():
    data = load_breast_cancer()
    x, y = data.data, data.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, stratify=y, random_state=0
    )
    scaler = StandardScaler().fit(x_train)
    z_train = scaler.transform(x_train)
    # scikit-learn's own cross-validated choice of C (5 stratified folds, accuracy).
    best_c = float(
        LogisticRegressionCV(Cs=CS, cv=5, scoring="accuracy", max_iter=10000)
        .fit(z_train, y_train)
        .C_[0]
    )
    clf = LogisticRegression(C=best_c, max_iter=10000).fit(z_train, y_train)
    float_acc = float(clf.score(scaler.transform(x_test), y_test))

    s_in = CLIP_SIGMAS / QMAX  # one input step in standard deviations
    offset = scaler.mean_.astype(np.float64)
    scale = (scaler.scale_ * s_in).astype(np.float64)

    def quantize(rows):
        t = (rows - offset) / scale
        return np.clip(np.round(t), QMIN, QMAX).astype(np.int64)

    coef = clf.coef_[0] * s_in  # logit = coef . q + intercept (up to rounding)
    k = WMAX / np.abs(coef).max()
    w = np.round(coef * k).astype(np.int64)
    b = int(np.round(clf.intercept_[0] * k))
    scores = quantize(x_test) @ w + b
    quant_acc = float(((scores > 0).astype(np.int64) == y_test).mean())
    bound = int(np.abs(w).sum() * 128 + abs(b))

    program = {
        "format": "cloister-he-program/v2",
        "name": "breast-cancer-lr",
        "description": "logistic regression on scikit-learn breast cancer, standardized "
        "features and weights quantized to signed 8-bit integers",
        "input": {
            "features": int(x.shape[1]),
            "min": QMIN,
            "max": QMAX,
            "offset": offset.tolist(),
            "scale": scale.tolist(),
            "rounding": "nearest",
        },
        "layers": [{"weights": [w.tolist()], "biases": [b]}],
        "output": {
            "bits": OUTPUT_BITS,
            "classes": [str(c) for c in data.target_names],
            "decision": "threshold",
            "scale": float(k),
        },
    }
    with open(os.path.join(HERE, "program.json"), "w") as f:
        json.dump(program, f, indent=1)
        f.write("\n")
    with open(os.path.join(HERE, "heldout.json"), "w") as f:
        json.dump({"input": x_test.tolist(), "labels": y_test.tolist()}, f)
        f.write("\n")
    metrics = {
        "heldout_rows": int(len(y_test)),
        "split": "stratified test_size=0.2 random_state=0",
        "C": best_c,
        "float_accuracy": float_acc,
        "quantized_plaintext_accuracy": quant_acc,
        "worst_case_abs_score": bound,
        "max_observed_abs_score": int(np.abs(scores).max()),
    }
    write_onnx(
        os.path.join(HERE, "model.onnx"),
        scaler.mean_,
        scaler.scale_,
        clf.coef_[0],
        clf.intercept_[0],
    )
    with open(os.path.join(HERE, "calibration.json"), "w") as f:
        json.dump({"input": x_train.tolist(), "labels": y_train.tolist()}, f)
        f.write("\n")
    with open(os.path.join(HERE, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)
        f.write("\n")
    print(json.dumps(metrics, indent=1))


if __name__ == "__main__":
    main()
