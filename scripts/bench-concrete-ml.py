"""Concrete ML 1.9 on the same data sets, splits and model shapes as Cloister's homomorphic
models (models/breast-cancer-lr, models/digits-mlp-he), measured in the same run.

Run through scripts/bench-concrete-ml.sh (it creates the virtual environment). Prints one
Markdown row per model: accuracy of the clear float model, of Concrete ML's quantized model
(simulated = exact FHE semantics), FHE latency per inference (mean of ROWS rows, after key
generation), and the size of the evaluation keys.
"""

import os
import sys
import time

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

ROWS = int(os.environ.get("ROWS", "5"))


def fhe_latency(model, x_rows):
    circuit = model.fhe_circuit
    t = time.perf_counter()
    circuit.keygen()
    keygen = time.perf_counter() - t
    eval_keys = len(circuit.client.evaluation_keys.serialize())
    times = []
    for row in x_rows[:ROWS]:
        t = time.perf_counter()
        model.predict(row.reshape(1, -1), fhe="execute")
        times.append(time.perf_counter() - t)
    return keygen, eval_keys, float(np.mean(times))


def breast_cancer():
    from concrete.ml.sklearn import LogisticRegression

    x, y = load_breast_cancer(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
    sc = StandardScaler().fit(x_tr)
    x_tr, x_te = sc.transform(x_tr), sc.transform(x_te)
    model = LogisticRegression(n_bits=8, C=0.3, max_iter=10000).fit(x_tr, y_tr)
    float_acc = float((model.sklearn_model.predict(x_te) == y_te).mean())
    model.compile(x_tr)
    sim_acc = float((model.predict(x_te, fhe="simulate") == y_te).mean())
    keygen, keys, latency = fhe_latency(model, x_te)
    return "breast-cancer LR (30 features, 8 bits)", float_acc, sim_acc, keygen, keys, latency


def digits_mlp(n_layers, multiplier, label):
    import torch
    from concrete.ml.sklearn import NeuralNetClassifier

    torch.manual_seed(0)
    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
    x_tr, x_te = (x_tr / 16.0).astype(np.float32), (x_te / 16.0).astype(np.float32)
    model = NeuralNetClassifier(
        module__n_layers=n_layers,
        module__n_w_bits=3,
        module__n_a_bits=3,
        module__n_accum_bits=8,
        module__n_hidden_neurons_multiplier=multiplier,
        module__activation_function=torch.nn.ReLU,
        max_epochs=200,
        lr=0.01,
        verbose=0,
    )
    model.fit(x_tr, y_tr.astype(np.int64))
    model.compile(x_tr)
    sim_acc = float((model.predict(x_te, fhe="simulate") == y_te).mean())
    keygen, keys, latency = fhe_latency(model, x_te)
    return label, float("nan"), sim_acc, keygen, keys, latency


def digits_mlp_same_shape():
    # 64 * 0.3125 = 20 hidden neurons: the shape of Cloister's digits-mlp-he.
    return digits_mlp(2, 0.3125, "digits MLP 64-20-10 (ReLU, 3-bit weights/activations)")


def digits_mlp_three_layers():
    # Concrete ML's usual 3-layer setting (the reference point).
    return digits_mlp(3, 4, "digits MLP 3 layers, 256 hidden (ReLU, 3-bit)")


def main():
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    print("| model (Concrete ML 1.9) | float accuracy | quantized accuracy | keygen | evaluation keys | FHE latency / inference |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for bench in (breast_cancer, digits_mlp_same_shape, digits_mlp_three_layers):
        name, fa, qa, kg, keys, lat = bench()
        print(
            f"| {name} | {'-' if fa != fa else f'{fa * 100:.1f} %'} | {qa * 100:.1f} % | {kg:.2f} s | "
            f"{keys / 2**20:.1f} MiB | {lat * 1000:.1f} ms |",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
