//! The hardware provider: extended SEV-SNP reports from the guest firmware (`/dev/sev-guest`),
//! through the `sev` crate.
//!
//! The extended report carries the certificate table the host installed (VCEK, ASK, ARK). Where
//! the host supplied only the VCEK, the ASK and ARK are AMD's built-in ones for the product line
//! whose ASK signed the VCEK ([`crate::roots`]); where it supplied nothing, a VCEK cached on disk
//! (`vcek.der` or `vcek.pem` in the cache directory, fetched out of band from AMD's key
//! distribution service) is used. The enclave never contacts AMD at request time.
//!
//! Nothing here can be exercised without SEV-SNP hardware, except the certificate-table logic in
//! [`chain_from_certificates`], which is tested with AMD's real Milan certificates.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sev::firmware::guest::Firmware;
use sev::firmware::host::CertType;

use crate::cert::ParsedCert;
use crate::error::{Error, Result};
use crate::provider::{AttestationProvider, RawEvidence};
use crate::roots::{pem_to_der, Product};

/// Name written into bundles for hardware evidence.
pub const SNP_PROVIDER_NAME: &str = "snp";

/// Certificates as found in an extended report's certificate table.
#[derive(Debug, Clone, Default)]
pub struct CertificateTable {
    /// VCEK (or VLEK), DER.
    pub vcek: Option<Vec<u8>>,
    /// ASK, DER.
    pub ask: Option<Vec<u8>>,
    /// ARK, DER.
    pub ark: Option<Vec<u8>>,
}

/// Completes a certificate table into a VCEK → ASK → ARK chain: the table's own entries first,
/// then a cached VCEK, then AMD's built-in ASK/ARK of the product whose ASK signed the VCEK.
pub fn chain_from_certificates(
    table: CertificateTable,
    cache_dir: Option<&Path>,
) -> Result<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    let vcek = match table.vcek {
        Some(v) => v,
        None => read_cached_vcek(cache_dir)?,
    };
    let (ask, ark) = match (table.ask, table.ark) {
        (Some(ask), Some(ark)) => (ask, ark),
        _ => {
            let parsed = ParsedCert::from_der("VCEK", &vcek)?;
            let product = Product::ALL
                .into_iter()
                .find(|p| {
                    ParsedCert::from_der("ASK", &p.ask_der())
                        .is_ok_and(|ask| parsed.verify_signed_by(&ask).is_ok())
                })
                .ok_or_else(|| {
                    Error::Provider(
                        "the VCEK is not signed by any built-in AMD ASK (Milan, Genoa, Turin) and \
                         the host supplied no ASK/ARK"
                            .into(),
                    )
                })?;
            (product.ask_der(), product.ark_der())
        }
    };
    Ok((vcek, ask, ark))
}

fn read_cached_vcek(cache_dir: Option<&Path>) -> Result<Vec<u8>> {
    let Some(dir) = cache_dir else {
        return Err(Error::Provider(
            "the host supplied no VCEK in the extended report and no certificate cache is \
             configured; install the VCEK with `snpguest`/the host's certificate table, or put \
             vcek.der in the cache directory"
                .into(),
        ));
    };
    let der: PathBuf = dir.join("vcek.der");
    if let Ok(bytes) = std::fs::read(&der) {
        return Ok(bytes);
    }
    let pem = dir.join("vcek.pem");
    let text = std::fs::read_to_string(&pem).map_err(|e| {
        Error::Provider(format!(
            "no VCEK in the report's certificate table and none cached at {} or {}: {e}",
            der.display(),
            pem.display()
        ))
    })?;
    pem_to_der(&text)
}

/// The SEV-SNP guest firmware as an attestation provider.
pub struct SnpProvider {
    firmware: Mutex<Firmware>,
    cache_dir: Option<PathBuf>,
}

impl std::fmt::Debug for SnpProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnpProvider")
            .field("cache_dir", &self.cache_dir)
            .finish()
    }
}

impl SnpProvider {
    /// Opens `/dev/sev-guest`; fails with a clear error outside an SEV-SNP guest.
    pub fn open(cache_dir: Option<&Path>) -> Result<SnpProvider> {
        let firmware = Firmware::open().map_err(|e| {
            Error::Provider(format!(
                "cannot open /dev/sev-guest ({e}): this is not an SEV-SNP guest (or the sev-guest \
                 driver is not loaded); on machines without SEV-SNP use provider = \"sim\" with \
                 allow_simulated = true"
            ))
        })?;
        Ok(SnpProvider {
            firmware: Mutex::new(firmware),
            cache_dir: cache_dir.map(Path::to_path_buf),
        })
    }
}

impl AttestationProvider for SnpProvider {
    fn name(&self) -> &str {
        SNP_PROVIDER_NAME
    }

    fn simulated(&self) -> bool {
        false
    }

    fn report(&self, report_data: [u8; 64]) -> Result<RawEvidence> {
        let mut fw = self.firmware.lock().unwrap_or_else(|p| p.into_inner());
        let (report, certs) = fw
            .get_ext_report(None, Some(report_data), Some(0))
            .map_err(|e| Error::Provider(format!("SNP_GET_EXT_REPORT failed: {e}")))?;
        let mut table = CertificateTable::default();
        for entry in certs.unwrap_or_default() {
            match entry.cert_type {
                CertType::VCEK | CertType::VLEK => table.vcek = Some(entry.data().to_vec()),
                CertType::ASK => table.ask = Some(entry.data().to_vec()),
                CertType::ARK => table.ark = Some(entry.data().to_vec()),
                _ => {}
            }
        }
        let (vcek_der, ask_der, ark_der) =
            chain_from_certificates(table, self.cache_dir.as_deref())?;
        Ok(RawEvidence {
            report,
            vcek_der,
            ask_der,
            ark_der,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn milan_vcek() -> Vec<u8> {
        include_bytes!("../tests/data/vcek_milan.der").to_vec()
    }

    #[test]
    fn a_table_with_only_the_vcek_is_completed_from_the_built_in_product_chain() {
        let (vcek, ask, ark) = chain_from_certificates(
            CertificateTable {
                vcek: Some(milan_vcek()),
                ..Default::default()
            },
            None,
        )
        .unwrap();
        assert_eq!(vcek, milan_vcek());
        assert_eq!(ask, Product::Milan.ask_der());
        assert_eq!(ark, Product::Milan.ark_der());
    }

    #[test]
    fn an_empty_table_uses_the_cached_vcek_or_says_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let e = chain_from_certificates(CertificateTable::default(), Some(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("vcek.der"), "{e}");
        assert!(chain_from_certificates(CertificateTable::default(), None)
            .unwrap_err()
            .to_string()
            .contains("no certificate cache"));
        std::fs::write(dir.path().join("vcek.der"), milan_vcek()).unwrap();
        let (vcek, _, ark) =
            chain_from_certificates(CertificateTable::default(), Some(dir.path())).unwrap();
        assert_eq!(vcek, milan_vcek());
        assert_eq!(ark, Product::Milan.ark_der());
    }

    #[test]
    fn a_vcek_no_amd_ask_signed_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let sim = crate::SimRoot::generate(dir.path()).unwrap();
        let e = chain_from_certificates(
            CertificateTable {
                vcek: Some(sim.vcek_der().to_vec()),
                ..Default::default()
            },
            None,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("not signed by any built-in AMD ASK"),
            "{e}"
        );
    }

    #[test]
    fn opening_outside_a_guest_fails_with_a_clear_error() {
        let in_guest = std::path::Path::new("/dev/sev-guest").exists();
        match SnpProvider::open(None) {
            Ok(_) => assert!(in_guest, "opened without /dev/sev-guest"),
            Err(e) => {
                let e = e.to_string();
                assert!(!in_guest || e.contains("/dev/sev-guest"), "{e}");
                assert!(
                    e.contains("/dev/sev-guest") && e.contains("provider = \"sim\""),
                    "{e}"
                );
            }
        }
    }
}
