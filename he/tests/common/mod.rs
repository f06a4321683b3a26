//! Shared fixtures: the committed programs and held-out rows, and one key pair per test
//! binary (key generation takes seconds).

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use cloister_he::client::{generate_keys, HeClient};
use cloister_he::server::Evaluator;
use cloister_he::Program;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `models/<dir>/program.json`.
pub fn program(dir: &str) -> Program {
    Program::load(&repo().join("models").join(dir).join("program.json"))
        .expect("committed program loads")
}

pub struct Heldout {
    pub input: Vec<Vec<f64>>,
    pub labels: Vec<i64>,
}

/// Held-out rows of a model directory (`heldout.json`).
pub fn heldout(dir: &str) -> Heldout {
    let text =
        std::fs::read_to_string(repo().join("models").join(dir).join("heldout.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let input = v["input"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect();
    let labels = v["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    Heldout { input, labels }
}

/// The held-out rows each model is measured on (the digits models share ../digits).
pub fn heldout_for(model: &str) -> Heldout {
    match model {
        "breast-cancer-lr" => heldout("breast-cancer-lr"),
        _ => heldout("digits"),
    }
}

pub struct Keys {
    pub client: HeClient,
    pub server_key_bytes: Vec<u8>,
    pub evaluator: Evaluator,
}

pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let generated = generate_keys(&mut |line| eprintln!("{line}")).unwrap();
        let evaluator = Evaluator::from_compressed_bytes(&generated.server_key_bytes).unwrap();
        Keys {
            client: generated.client,
            server_key_bytes: generated.server_key_bytes,
            evaluator,
        }
    })
}
