//! The enclave process: the only place where requests are opened.
//!
//! Start-up ([`startup`]) loads the policy and its models, creates the HPKE and
//! Ed25519 keys and the attestation provider, and opens the audit log. The
//! server ([`server`]) then answers frames from the gateway: evidence requests
//! ([`evidence`]) and sealed inference requests ([`handler`]).
//!
//! INVARIANT: no response leaves the enclave before its audit record is on
//! disk (see [`handler::Enclave::handle_sealed`]).

#![forbid(unsafe_code)]

pub mod convert;
pub mod evidence;
pub mod handler;
pub mod replay;
pub mod server;
pub mod startup;
