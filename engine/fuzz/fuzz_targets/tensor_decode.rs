//! Fuzzes the tensor decoder (`TensorProto` bytes, as in initializers and test-data `.pb`
//! files): any input must give a tensor whose length matches its shape, or an `EngineError`.
#![no_main]

use cloister_engine::onnx::decode_tensor;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((_, t)) = decode_tensor(data) {
        assert_eq!(t.len(), t.shape().iter().product::<usize>());
    }
});
