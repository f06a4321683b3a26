//! The one error type of this crate.
//!
//! It exists so that every caller (enclave start-up, the gateway relaying evidence, the client
//! CLI) gets a typed reason naming what failed: which certificate, which field, which check.
//! Verification failures carry the name of the [`crate::verify::Check`] that failed.

use std::path::PathBuf;

/// Everything that can go wrong while producing, encoding or verifying attestation evidence.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The attestation report does not have the fixed SEV-SNP size (the producer is at fault).
    #[error("attestation report is {actual} bytes, expected {expected}")]
    ReportLength {
        /// Required length (0x4A0).
        expected: usize,
        /// Length received.
        actual: usize,
    },
    /// The report's VERSION field is one this verifier does not understand.
    #[error("unsupported attestation report version {0} (need >= 2)")]
    UnsupportedReportVersion(u32),
    /// The report's SIGNATURE_ALGO is not 1 (ECDSA P-384 with SHA-384).
    #[error("unsupported report signature algorithm {0} (need 1 = ECDSA P-384/SHA-384)")]
    UnsupportedReportSignatureAlgo(u32),
    /// The report's signature field is not a well-formed, zero-padded P-384 (r, s) pair.
    #[error("malformed report signature: {0}")]
    MalformedReportSignature(String),
    /// The report's signature does not verify under the VCEK key.
    #[error("report signature does not verify under the VCEK public key")]
    ReportSignatureInvalid,
    /// A certificate could not be decoded.
    #[error("cannot parse {which} certificate: {reason}")]
    CertificateParse {
        /// Which certificate: "ARK", "ASK", "VCEK".
        which: &'static str,
        /// Decoder message.
        reason: String,
    },
    /// A certificate is signed (or keyed) with an algorithm this verifier does not implement.
    #[error("unsupported signature algorithm on {which} certificate: {algorithm}")]
    UnsupportedSignatureAlgorithm {
        /// Which certificate.
        which: &'static str,
        /// OID or description of the algorithm.
        algorithm: String,
    },
    /// A public key in a certificate could not be decoded.
    #[error("bad public key in {which} certificate: {reason}")]
    PublicKey {
        /// Which certificate holds the key.
        which: &'static str,
        /// Decoder message.
        reason: String,
    },
    /// A certificate's signature does not verify under its issuer's key.
    #[error("{subject} certificate signature does not verify under the {issuer} key")]
    CertificateSignatureInvalid {
        /// The signed certificate.
        subject: &'static str,
        /// The certificate whose key should have signed it.
        issuer: &'static str,
    },
    /// The VCEK lacks an AMD extension the verifier needs.
    #[error("VCEK certificate lacks extension {oid}")]
    MissingExtension {
        /// Dotted OID.
        oid: &'static str,
    },
    /// An AMD extension in the VCEK is not encoded as AMD specifies.
    #[error("VCEK extension {oid} is malformed: {reason}")]
    MalformedExtension {
        /// Dotted OID.
        oid: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The evidence bundle JSON could not be decoded or encoded.
    #[error("evidence bundle JSON: {0}")]
    BundleJson(String),
    /// The evidence bundle names a format version this code does not speak.
    #[error("unsupported evidence bundle format_version {0} (expected 1)")]
    UnsupportedBundleVersion(u32),
    /// Reading or writing a file failed.
    #[error("I/O on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A PEM file (certificate or key) of the SIMULATED root could not be decoded.
    #[error("cannot decode {path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// Decoder message.
        reason: String,
    },
    /// Generating SIMULATED keys or certificates failed.
    #[error("SIMULATED root generation failed: {0}")]
    SimGeneration(String),
    /// Signing a SIMULATED report failed.
    #[error("SIMULATED report signing failed: {0}")]
    SimSigning(String),
    /// Evidence verification failed at the named check (see [`crate::verify::Check`]).
    #[error("attestation check '{check}' failed: {detail}")]
    CheckFailed {
        /// The name of the failed check, as listed by the verifier.
        check: &'static str,
        /// Why it failed.
        detail: String,
    },
    /// The SEV-SNP hardware provider is unavailable or failed (not in a guest, or firmware refused).
    #[error("SEV-SNP provider: {0}")]
    Provider(String),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Verification errors are ordinary [`Error`]s (mostly [`Error::CheckFailed`]).
pub type VerifyError = Error;
