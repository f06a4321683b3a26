//! The untrusted gateway: TLS termination, outer authentication, limits and
//! forwarding of sealed bytes to the enclave.
//!
//! The gateway is assumed hostile (see `ARCHITECTURE.md`). It is built so that
//! it *cannot* read what it forwards: this crate depends on no crate that can
//! open a sealed request (checked by `tests/dependency_boundary.rs`), and the
//! bearer token it checks is derived one-way from the tenant's API key
//! ([`cloister_protocol::auth`]), so it never learns the credential the enclave
//! checks.

#![forbid(unsafe_code)]

pub mod config;
pub mod enclave_link;
pub mod errors;
pub mod server;
pub mod tls;
