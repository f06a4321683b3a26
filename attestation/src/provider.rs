//! The interface every source of attestation evidence implements.
//!
//! It exists so the enclave can ask for a report without knowing whether it runs on SEV-SNP
//! hardware or under the SIMULATED provider; the provider's name and `simulated()` flag travel
//! into the evidence bundle so that no verifier can mistake one for the other.

use crate::error::Result;

/// The raw output of a provider: a report and the certificate chain that vouches for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvidence {
    /// The 1184-byte attestation report.
    pub report: Vec<u8>,
    /// VCEK certificate, DER.
    pub vcek_der: Vec<u8>,
    /// ASK certificate, DER.
    pub ask_der: Vec<u8>,
    /// ARK certificate, DER.
    pub ark_der: Vec<u8>,
}

/// A source of attestation reports.
pub trait AttestationProvider {
    /// Short provider name as written into bundles: `"snp"` or `"sim"`.
    fn name(&self) -> &str;
    /// True if the evidence is SIMULATED (offers no hardware isolation).
    fn simulated(&self) -> bool;
    /// Produces a signed report carrying `report_data`.
    fn report(&self, report_data: [u8; 64]) -> Result<RawEvidence>;
}
