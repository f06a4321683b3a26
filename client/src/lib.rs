//! The Cloister client: an SDK and the `cloister` command line.
//!
//! - [`profile`]: the client profile (`client.toml`) written by `cloister up`;
//! - [`https`]: a small TLS 1.3 HTTPS client pinned to the profile's CA;
//! - [`sdk`]: attest → verify → seal → send → open, in that order and no other;
//! - [`datadir`]: first-run creation of the data directory (policy, TLS, keys);
//! - [`up`]: the launcher that runs the enclave and the gateway;
//! - [`audit_cli`]: `cloister audit …`, read-only review of an audit directory;
//! - [`audit_report`]: `cloister audit report`, the self-contained HTML page;
//! - [`engine_cli`]: `cloister run` and `cloister conformance`, the engine with no service;
//! - [`he_compile_cli`]: `cloister he compile`, ONNX + calibration → homomorphic program.
//!
//! INVARIANT: the SDK never sends request data to an enclave whose evidence it
//! has not verified in the same call (see [`sdk::Client::infer`]).

#![forbid(unsafe_code)]

pub mod attest_cli;
pub mod audit_cli;
pub mod audit_report;
pub mod datadir;
pub mod engine_cli;
pub mod he_compile_cli;
pub mod he_infer;
pub mod https;
pub mod keygen_cli;
pub mod privacy_cli;
pub mod profile;
pub mod sdk;
pub mod text;
pub mod up;
