#!/usr/bin/env python3
"""The parity suite's reference: runs a model in onnxruntime on the inputs the Rust test wrote.

Usage: ort_reference.py MODEL.onnx CASE_DIR...
Each CASE_DIR holds input_0.pb, input_1.pb, ... (TensorProto, named after the graph input);
this writes output_0.pb, ... (TensorProto, named after the graph output) beside them, in the
layout of the ONNX backend node tests. One session serves every case.
"""

import sys
from pathlib import Path

import onnx
import onnxruntime as ort
from onnx import numpy_helper


def main():
    model, cases = sys.argv[1], [Path(c) for c in sys.argv[2:]]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    for case in cases:
        feeds = {}
        for f in sorted(case.glob("input_*.pb")):
            t = onnx.TensorProto()
            t.ParseFromString(f.read_bytes())
            feeds[t.name] = numpy_helper.to_array(t)
        names = [o.name for o in sess.get_outputs()]
        for i, (name, value) in enumerate(zip(names, sess.run(names, feeds))):
            (case / f"output_{i}.pb").write_bytes(numpy_helper.from_array(value, name).SerializeToString())


if __name__ == "__main__":
    main()
