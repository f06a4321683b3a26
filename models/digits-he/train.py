"""Train and quantize the Cloister homomorphic demo model (digits, logistic regression).

Produces, next to this file:
  program.json  - the integer program `cloister-he` evaluates on TFHE ciphertexts
                  (input quantization, integer weights and biases, scales, score width)
  metrics.json  - float and quantized-plaintext accuracy on the held-out rows

The held-out rows are exactly ../digits/heldout.json (same split as the digits demo model:
test_size=0.2, stratified, random_state=0); the script asserts it.

Why this shape: each of the 64 pixels (0..16) is quantized to 2 bits, which is exactly one
TFHE-rs shortint block under the default PARAM_MESSAGE_2_CARRY_2 parameters, so the client
encrypts one block per pixel and the server never needs a bootstrap to split inputs. Weights
are signed 4-bit integers (-7..7): the server applies them as clear scalars in base 4, so each
term stays inside the block's carry space and the library's noise budget.

Deterministic. Regenerate with
    pip install -r requirements.txt && python3 train.py
"""

import json
import os

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

HERE = os.path.dirname(os.path.abspath(__file__))
INPUT_BITS = 2  # one 2-bit TFHE block per pixel
STEP = 17.0 / (1 << INPUT_BITS)  # q = clamp(floor(x / STEP), 0, 3); pixels are 0..16
WEIGHT_MAX = 7  # signed 4-bit weights
SCORE_BITS = 10  # two's complement scores, 5 blocks of 2 bits
C = 0.1


def quantize(x):
    return np.clip(np.floor(x / STEP), 0, (1 << INPUT_BITS) - 1).astype(np.int64)


def dump_program(program):
    """JSON with one weight row per line, so diffs of the program stay readable."""
    lines = []
    for key, value in program.items():
        if key == "weights":
            rows = ",\n".join("  " + json.dumps(r, separators=(",", ":")) for r in value)
            lines.append(f' "weights": [\n{rows}\n ]')
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def main():
    digits = load_digits()
    x, y = digits.data, digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, stratify=y, random_state=0
    )
    with open(os.path.join(HERE, "..", "digits", "heldout.json")) as f:
        held = json.load(f)
    assert np.array_equal(np.array(held["input"]), x_test), "held-out rows differ"
    assert np.array_equal(np.array(held["labels"]), y_test), "held-out labels differ"

    q_train, q_test = quantize(x_train), quantize(x_test)
    clf = LogisticRegression(C=C, max_iter=10000).fit(q_train, y_train)
    float_acc = float(clf.score(q_test, y_test))

    # Float model on the unquantized pixels, for reference.
    clf_raw = LogisticRegression(C=C, max_iter=10000).fit(x_train, y_train)
    float_raw_acc = float(clf_raw.score(x_test, y_test))

    scale = WEIGHT_MAX / np.abs(clf.coef_).max()
    w = np.round(clf.coef_ * scale).astype(np.int64)
    b = np.round(clf.intercept_ * scale).astype(np.int64)
    scores = q_test @ w.T + b
    quant_acc = float((np.argmax(scores, axis=1) == y_test).mean())

    qmax = (1 << INPUT_BITS) - 1
    bound = int((np.abs(w).sum(axis=1) * qmax + np.abs(b)).max())
    limit = 1 << (SCORE_BITS - 1)
    assert bound < limit, (bound, limit)

    program = {
        "format": "cloister-he-program/v1",
        "name": "digits-he-lr",
        "description": "logistic regression on 8x8 digits, pixels quantized to 2 bits, "
        "weights to signed 4-bit integers",
        "input": {"features": 64, "bits": INPUT_BITS, "step": STEP, "max_value": 16.0},
        "classes": [str(i) for i in range(10)],
        "weights": w.tolist(),
        "biases": b.tolist(),
        "weight_scale": float(scale),
        "score_bits": SCORE_BITS,
    }
    with open(os.path.join(HERE, "program.json"), "w") as f:
        f.write(dump_program(program))
    metrics = {
        "heldout_rows": int(len(y_test)),
        "float_accuracy_raw_pixels": float_raw_acc,
        "float_accuracy_quantized_inputs": float_acc,
        "quantized_plaintext_accuracy": quant_acc,
        "worst_case_abs_score": bound,
        "score_limit": limit,
        "max_observed_abs_score": int(np.abs(scores).max()),
    }
    with open(os.path.join(HERE, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)
        f.write("\n")
    print(json.dumps(metrics, indent=1))


if __name__ == "__main__":
    main()
