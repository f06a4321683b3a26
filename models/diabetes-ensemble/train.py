"""Train the regression teacher ensemble for Cloister's differential-privacy demo.

K linear-regression teachers, each fitted on its own disjoint partition of scikit-learn's
bundled diabetes training split (80/20, random_state=0). One training record therefore
influences exactly one teacher, which is what the enclave's sensitivity (upper - lower) / K
for the clamped mean assumes.

The ONNX graph has input `input` [N, 10] float32 (the ten standardised features of
load_diabetes) and output `predictions` [N, K] float32: every teacher's prediction, one Gemm
over the stacked weights. The enclave clamps each prediction to the policy's range, averages
and adds Gaussian noise (OpenDP).

Writes diabetes-ensemble.onnx and heldout.json (held-out inputs, targets and the
onnxruntime predictions, which must match scikit-learn's), and prints the accuracy figures.
"""

import json
import pathlib

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_diabetes
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import train_test_split

K = 16
LOWER, UPPER = 50.0, 300.0  # the clamp range of the default policy (target range: 25-346)
HERE = pathlib.Path(__file__).resolve().parent


def main() -> None:
    x, y = load_diabetes(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, random_state=0
    )
    rng = np.random.default_rng(0)
    parts = np.array_split(rng.permutation(len(x_train)), K)
    teachers = [LinearRegression().fit(x_train[idx], y_train[idx]) for idx in parts]
    w = np.stack([t.coef_ for t in teachers], axis=1).astype(np.float32)  # [10, K]
    b = np.array([t.intercept_ for t in teachers], dtype=np.float32)  # [K]
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["input", "W", "B"], ["predictions"])],
        "diabetes_ensemble",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 10])],
        [helper.make_tensor_value_info("predictions", TensorProto.FLOAT, ["N", K])],
        initializer=[numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")],
    )
    model = helper.make_model(
        graph,
        producer_name="cloister models/diabetes-ensemble/train.py",
        opset_imports=[helper.make_opsetid("", 13)],
    )
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    out = HERE / "diabetes-ensemble.onnx"
    out.write_bytes(model.SerializeToString())

    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    preds = sess.run(["predictions"], {"input": x_test.astype(np.float32)})[0]
    sk = np.stack([t.predict(x_test) for t in teachers], axis=1)
    assert np.allclose(preds, sk, rtol=1e-4, atol=1e-2), np.abs(preds - sk).max()
    rmse = lambda p: float(np.sqrt(np.mean((p - y_test) ** 2)))  # noqa: E731
    clamped_mean = np.clip(preds, LOWER, UPPER).mean(axis=1)
    single = LinearRegression().fit(x_train, y_train).predict(x_test)
    print(f"teachers: {K}, rows per teacher: {len(parts[-1])}-{len(parts[0])}")
    print(f"target: mean {y_test.mean():.1f}, std {y_test.std():.1f} (predicting the mean: RMSE {rmse(np.full_like(y_test, y_train.mean())):.1f})")
    print(f"teacher RMSE: mean {np.mean([rmse(sk[:, k]) for k in range(K)]):.1f}")
    print(f"clamped ensemble mean RMSE (no noise): {rmse(clamped_mean):.1f}")
    print(f"one model on all training rows (not private): RMSE {rmse(single):.1f}")
    (HERE / "heldout.json").write_text(
        json.dumps(
            {
                "input": np.round(x_test, 8).tolist(),
                "targets": y_test.tolist(),
                "onnxruntime_predictions": np.round(preds.astype(np.float64), 4).tolist(),
                "clamp": [LOWER, UPPER],
                "clamped_mean_rmse": rmse(clamped_mean),
            }
        )
    )


if __name__ == "__main__":
    main()
