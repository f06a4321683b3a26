//! The enclave process: the only place where requests are opened.
//!
//! Start-up ([`startup`]) loads the policy and its models, creates the HPKE and
//! Ed25519 keys and the attestation provider, and opens the audit log. The
//! server ([`server`]) then answers frames from the gateway: evidence requests
//! ([`evidence`]) and sealed inference requests ([`handler`]). Between the two,
//! [`sandbox::lock_down`] confines the process (landlock, seccomp, limits) before the
//! runtime starts a thread or the first request is read.
//!
//! INVARIANT: no response leaves the enclave before its audit record is on
//! disk (see [`handler::Enclave::handle_sealed`]).
//!
//! The engine never runs in this process: [`worker`] starts the engine zygote before any key
//! exists and runs each request's model in a fresh, tightly sandboxed worker process.

// `unsafe` is allowed only in the sandbox's and the worker's system-call wrappers, each with a
// SAFETY comment.
#![deny(unsafe_code)]

mod attack_guard;
pub mod convert;
pub mod evidence;
pub mod handler;
pub mod he;
pub mod privacy;
pub mod replay;
pub mod sandbox;
pub mod server;
pub mod startup;
pub mod worker;
