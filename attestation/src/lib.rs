//! `cloister-attestation`: evidence that a Cloister enclave runs where and what it claims.
//!
//! This crate exists so that the enclave, the gateway and the client share one definition of
//! attestation evidence and one verifier:
//!
//! - [`report`]: the AMD SEV-SNP `ATTESTATION_REPORT` layout, parser, serialiser and signature
//!   check;
//! - [`binding`]: what the enclave binds into `REPORT_DATA` (keys, policy, models, build, nonce);
//! - [`evidence`]: the JSON [`EvidenceBundle`] served at `GET /v1/attestation`;
//! - [`cert`]: the AMD ARK → ASK → VCEK certificates and VCEK extensions;
//! - [`provider`]: the [`AttestationProvider`] trait;
//! - [`sim`]: the SIMULATED provider for machines without SEV-SNP (no hardware isolation);
//! - [`verify`](mod@verify): the pure verifier producing [`VerifiedEvidence`].
//!
//! Verification does no IO. Only [`sim`] touches files.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod binding;
pub mod cert;
pub mod error;
pub mod evidence;
pub mod offline;
pub mod provider;
pub mod report;
pub mod roots;
pub mod sim;
pub mod snp;
pub mod verify;

pub use binding::{report_data, Binding};
pub use error::{Error, Result, VerifyError};
pub use evidence::EvidenceBundle;
pub use provider::{AttestationProvider, RawEvidence};
pub use report::{AttestationReport, Tcb};
pub use roots::Product;
pub use sim::{measure_file, SimProvider, SimRoot};
pub use snp::SnpProvider;
pub use verify::{verify, Check, Verification, VerifiedEvidence, VerifierPolicy};
