//! AMD's root certificates, built in, so hardware evidence verifies offline.
//!
//! A client pins an ARK; for real hardware that is one of AMD's per-product roots below,
//! never a certificate that arrived with the evidence. The SIMULATED root is never built in:
//! a client trusts it only when told to (a profile written by `cloister up`).

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// An AMD EPYC product line with its own SEV-SNP root of trust.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Product {
    /// 3rd generation EPYC.
    Milan,
    /// 4th generation EPYC.
    Genoa,
    /// 5th generation EPYC.
    Turin,
}

impl Product {
    /// Every product with a built-in root.
    pub const ALL: [Product; 3] = [Product::Milan, Product::Genoa, Product::Turin];

    /// Lower-case name, as accepted by `--product`.
    pub fn name(self) -> &'static str {
        match self {
            Product::Milan => "milan",
            Product::Genoa => "genoa",
            Product::Turin => "turin",
        }
    }

    /// AMD's ARK for this product, PEM.
    pub fn ark_pem(self) -> &'static str {
        match self {
            Product::Milan => include_str!("../roots/milan-ark.pem"),
            Product::Genoa => include_str!("../roots/genoa-ark.pem"),
            Product::Turin => include_str!("../roots/turin-ark.pem"),
        }
    }

    /// AMD's ASK for this product, PEM.
    pub fn ask_pem(self) -> &'static str {
        match self {
            Product::Milan => include_str!("../roots/milan-ask.pem"),
            Product::Genoa => include_str!("../roots/genoa-ask.pem"),
            Product::Turin => include_str!("../roots/turin-ask.pem"),
        }
    }

    /// AMD's ARK for this product, DER.
    pub fn ark_der(self) -> Vec<u8> {
        pem_to_der(self.ark_pem()).expect("built-in ARK is valid PEM")
    }

    /// AMD's ASK for this product, DER.
    pub fn ask_der(self) -> Vec<u8> {
        pem_to_der(self.ask_pem()).expect("built-in ASK is valid PEM")
    }

    /// The product whose built-in ARK is exactly `ark_der`, if any.
    pub fn from_ark_der(ark_der: &[u8]) -> Option<Product> {
        Product::ALL.into_iter().find(|p| p.ark_der() == ark_der)
    }
}

impl fmt::Display for Product {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Product {
    type Err = Error;
    fn from_str(s: &str) -> Result<Product> {
        Product::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| Error::Pem {
                path: s.into(),
                reason: "unknown product; expected milan, genoa or turin".into(),
            })
    }
}

/// Decodes the first certificate of a PEM text to DER.
pub fn pem_to_der(pem: &str) -> Result<Vec<u8>> {
    use der::{DecodePem, Encode};
    let cert = x509_cert::Certificate::from_pem(pem.as_bytes()).map_err(|e| Error::Pem {
        path: "(PEM text)".into(),
        reason: e.to_string(),
    })?;
    cert.to_der().map_err(|e| Error::Pem {
        path: "(PEM text)".into(),
        reason: e.to_string(),
    })
}

/// Decodes every certificate of a PEM bundle (AMD serves ASK then ARK) to DER.
pub fn pem_chain_to_der(pem: &str) -> Result<Vec<Vec<u8>>> {
    use der::Encode;
    let certs = x509_cert::Certificate::load_pem_chain(pem.as_bytes()).map_err(|e| Error::Pem {
        path: "(PEM bundle)".into(),
        reason: e.to_string(),
    })?;
    certs
        .iter()
        .map(|c| {
            c.to_der().map_err(|e| Error::Pem {
                path: "(PEM bundle)".into(),
                reason: e.to_string(),
            })
        })
        .collect()
}
