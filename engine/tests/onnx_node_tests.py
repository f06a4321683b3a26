#!/usr/bin/env python3
"""Writes the ONNX backend *node* test data of the installed `onnx` package into a directory.

Why this script: the PyPI wheel ships the test generators (`onnx/backend/test/case/node/`), not
the data. The package's own writer, `onnx.backend.test.cmd_tools.generate_data`, writes every
kind of case; we point it at the node cases only (`collect_testcases()` of the node package), so
the output is exactly `DIR/node/test_*/{model.onnx,test_data_set_*/{input,output}_*.pb}`.

Usage: python3 onnx_node_tests.py OUTPUT_DIR   (writes into a temporary sibling, then renames,
so an interrupted run never leaves a half-written suite that looks complete).
"""

import argparse
import os
import shutil
import sys

import onnx
import onnx.backend.test.case.node as node_cases
import onnx.backend.test.cmd_tools as cmd_tools


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("output", help="directory to create (replaced if present)")
    args = parser.parse_args()

    final = os.path.abspath(args.output)
    tmp = final + ".partial"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)

    # Restrict the writer to node cases: it calls `model_test.collect_testcases()`.
    class NodeOnly:
        @staticmethod
        def collect_testcases():
            return node_cases.collect_testcases()

    cmd_tools.model_test = NodeOnly
    cmd_tools.generate_data(argparse.Namespace(output=tmp))

    with open(os.path.join(tmp, "ONNX_VERSION"), "w") as f:
        f.write(onnx.__version__ + "\n")
    if os.path.exists(final):
        shutil.rmtree(final)
    os.rename(tmp, final)
    count = len(os.listdir(os.path.join(final, "node")))
    print(f"wrote {count} node tests (onnx {onnx.__version__}) to {final}/node")
    return 0


if __name__ == "__main__":
    sys.exit(main())
