//! Fuzzes the ONNX loader: protobuf decoding, tensor conversion, graph validation, shape
//! inference and load-time constant folding. Any input must give a model or an `EngineError`;
//! a model that loads is also run once on a small conforming input.
#![no_main]

use cloister_engine::{DType, Model, Tensor};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(model) = Model::from_bytes(data) else {
        return;
    };
    let mut feeds = Vec::new();
    for info in model.inputs() {
        let shape: Vec<usize> = info
            .shape
            .iter()
            .map(|d| d.fixed().unwrap_or(2).min(16))
            .collect();
        let n: usize = shape.iter().product();
        let t = match info.dtype {
            DType::F32 => Tensor::from_f32(shape, vec![0.5; n]),
            DType::I64 => Tensor::from_i64(shape, vec![1; n]),
            _ => return,
        };
        match t {
            Ok(t) => feeds.push((info.name.clone(), t)),
            Err(_) => return,
        }
    }
    let _ = model.run(feeds);
});
