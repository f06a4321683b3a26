//! X.509 handling for the AMD key hierarchy ARK → ASK → VCEK.
//!
//! This module exists to keep certificate parsing, signature checks and AMD's VCEK extensions in
//! one place. Signatures are checked over the *received* `tbsCertificate` bytes (never a
//! re-encoding). Two signature algorithms are supported, which are the ones AMD and the
//! SIMULATED hierarchy use: RSASSA-PSS with SHA-384 (real ARK and ASK, RSA-4096) and ECDSA
//! P-384 with SHA-384 (SIMULATED chain). Anything else is an
//! [`Error::UnsupportedSignatureAlgorithm`].

use der::asn1::ObjectIdentifier as Oid;
use der::{Decode, Encode, Reader, SliceReader};
use p384::ecdsa::signature::Verifier;
use p384::pkcs8::DecodePublicKey;
use x509_cert::Certificate;

use crate::error::{Error, Result};
use crate::report::Tcb;

/// ecdsa-with-SHA384.
pub const OID_ECDSA_SHA384: Oid = Oid::new_unwrap("1.2.840.10045.4.3.3");
/// id-RSASSA-PSS.
pub const OID_RSASSA_PSS: Oid = Oid::new_unwrap("1.2.840.113549.1.1.10");
/// rsaEncryption (SubjectPublicKeyInfo algorithm).
pub const OID_RSA_ENCRYPTION: Oid = Oid::new_unwrap("1.2.840.113549.1.1.1");
/// id-sha384.
pub const OID_SHA384: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.2");
/// id-mgf1.
pub const OID_MGF1: Oid = Oid::new_unwrap("1.2.840.113549.1.1.8");

/// AMD VCEK extension: boot loader SPL (DER INTEGER).
pub const OID_BL_SPL: &str = "1.3.6.1.4.1.3704.1.3.1";
/// AMD VCEK extension: TEE SPL (DER INTEGER).
pub const OID_TEE_SPL: &str = "1.3.6.1.4.1.3704.1.3.2";
/// AMD VCEK extension: SNP SPL (DER INTEGER).
pub const OID_SNP_SPL: &str = "1.3.6.1.4.1.3704.1.3.3";
/// AMD VCEK extension: microcode SPL (DER INTEGER).
pub const OID_UCODE_SPL: &str = "1.3.6.1.4.1.3704.1.3.8";
/// AMD VCEK extension: FMC SPL, Turin and later (DER INTEGER).
pub const OID_FMC_SPL: &str = "1.3.6.1.4.1.3704.1.3.9";
/// AMD VCEK extension: hardware ID, the raw chip id bytes as the extension's OCTET STRING.
pub const OID_HW_ID: &str = "1.3.6.1.4.1.3704.1.4";

/// A decoded certificate together with the exact bytes its signature covers.
#[derive(Debug, Clone)]
pub struct ParsedCert {
    /// Which certificate of the chain this is ("ARK", "ASK", "VCEK"); used in errors.
    pub which: &'static str,
    /// The decoded certificate.
    pub cert: Certificate,
    /// The received DER.
    pub der: Vec<u8>,
    tbs_raw: Vec<u8>,
}

/// TCB and hardware id as certified by a VCEK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VcekExtensions {
    /// The SPLs the VCEK was derived for.
    pub tcb: Tcb,
    /// The hwID extension (64 bytes on Milan/Genoa, 8 on Turin).
    pub hw_id: Vec<u8>,
}

impl ParsedCert {
    /// Decodes a DER certificate. `which` names it in errors.
    pub fn from_der(which: &'static str, der: &[u8]) -> Result<Self> {
        let perr = |e: der::Error| Error::CertificateParse {
            which,
            reason: e.to_string(),
        };
        let cert = Certificate::from_der(der).map_err(perr)?;
        // Slice out the raw tbsCertificate TLV: Certificate ::= SEQUENCE { tbs, alg, sig }.
        let mut r = SliceReader::new(der).map_err(perr)?;
        let tbs_raw = r
            .sequence(|inner| {
                let tbs = inner.tlv_bytes()?;
                // Skip the rest; `Certificate::from_der` already validated it.
                let rest = inner.remaining_len();
                inner.read_slice(rest)?;
                Ok(tbs.to_vec())
            })
            .map_err(perr)?;
        if cert.signature_algorithm != cert.tbs_certificate.signature {
            return Err(Error::CertificateParse {
                which,
                reason: "outer signatureAlgorithm differs from tbsCertificate.signature".into(),
            });
        }
        Ok(Self {
            which,
            cert,
            der: der.to_vec(),
            tbs_raw,
        })
    }

    /// The subject name, RFC 4514 style.
    pub fn subject(&self) -> String {
        self.cert.tbs_certificate.subject.to_string()
    }

    /// True if the subject names a SIMULATED certificate (Cloister's simulated AMD hierarchy).
    pub fn is_simulated(&self) -> bool {
        self.subject().contains("SIMULATED")
    }

    /// The certificate's public key as a P-384 ECDSA key (the VCEK, or a SIMULATED CA).
    pub fn p384_key(&self) -> Result<p384::ecdsa::VerifyingKey> {
        let spki = self
            .cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| Error::PublicKey {
                which: self.which,
                reason: e.to_string(),
            })?;
        p384::ecdsa::VerifyingKey::from_public_key_der(&spki).map_err(|e| Error::PublicKey {
            which: self.which,
            reason: format!("not an EC P-384 key: {e}"),
        })
    }

    fn rsa_key(&self) -> Result<rsa::RsaPublicKey> {
        use rsa::pkcs1::DecodeRsaPublicKey;
        let spki = &self.cert.tbs_certificate.subject_public_key_info;
        let alg = spki.algorithm.oid;
        if alg != OID_RSA_ENCRYPTION && alg != OID_RSASSA_PSS {
            return Err(Error::PublicKey {
                which: self.which,
                reason: format!("expected an RSA key, found algorithm {alg}"),
            });
        }
        let bits = spki.subject_public_key.as_bytes().ok_or(Error::PublicKey {
            which: self.which,
            reason: "public key BIT STRING has unused bits".into(),
        })?;
        rsa::RsaPublicKey::from_pkcs1_der(bits).map_err(|e| Error::PublicKey {
            which: self.which,
            reason: e.to_string(),
        })
    }

    /// Verifies that this certificate's signature was made by `issuer`'s key.
    pub fn verify_signed_by(&self, issuer: &ParsedCert) -> Result<()> {
        let bad = || Error::CertificateSignatureInvalid {
            subject: self.which,
            issuer: issuer.which,
        };
        let sig = self.cert.signature.as_bytes().ok_or_else(bad)?;
        let alg = &self.cert.signature_algorithm;
        if alg.oid == OID_ECDSA_SHA384 {
            let key = issuer.p384_key()?;
            let sig = p384::ecdsa::Signature::from_der(sig).map_err(|_| bad())?;
            key.verify(&self.tbs_raw, &sig).map_err(|_| bad())
        } else if alg.oid == OID_RSASSA_PSS {
            let salt_len = self.check_pss_params()?;
            let key = issuer.rsa_key()?;
            let vk = rsa::pss::VerifyingKey::<sha2::Sha384>::new_with_salt_len(key, salt_len);
            let sig = rsa::pss::Signature::try_from(sig).map_err(|_| bad())?;
            use rsa::signature::Verifier as _;
            vk.verify(&self.tbs_raw, &sig).map_err(|_| bad())
        } else {
            Err(Error::UnsupportedSignatureAlgorithm {
                which: self.which,
                algorithm: alg.oid.to_string(),
            })
        }
    }

    /// Requires RSASSA-PSS parameters SHA-384 / MGF1-SHA-384; returns the salt length.
    fn check_pss_params(&self) -> Result<usize> {
        let unsupported = |why: &str| Error::UnsupportedSignatureAlgorithm {
            which: self.which,
            algorithm: format!("RSASSA-PSS {why}"),
        };
        let params = self
            .cert
            .signature_algorithm
            .parameters
            .as_ref()
            .ok_or_else(|| unsupported("without parameters"))?;
        let p: rsa::pkcs1::RsaPssParams<'_> = params
            .decode_as()
            .map_err(|e| unsupported(&format!("with undecodable parameters: {e}")))?;
        if p.hash.oid != OID_SHA384 {
            return Err(unsupported(&format!("with hash {}", p.hash.oid)));
        }
        let mgf_hash = p.mask_gen.parameters.map(|h| h.oid);
        if p.mask_gen.oid != OID_MGF1 || mgf_hash != Some(OID_SHA384) {
            return Err(unsupported(
                "with a mask generation other than MGF1-SHA-384",
            ));
        }
        Ok(usize::from(p.salt_len))
    }

    /// Reads AMD's VCEK extensions (TCB SPLs and hwID).
    pub fn vcek_extensions(&self) -> Result<VcekExtensions> {
        let exts = self
            .cert
            .tbs_certificate
            .extensions
            .as_deref()
            .unwrap_or_default();
        let find = |oid: &'static str| -> Option<&[u8]> {
            exts.iter()
                .find(|e| e.extn_id.to_string() == oid)
                .map(|e| e.extn_value.as_bytes())
        };
        let spl = |oid: &'static str| -> Result<Option<u8>> {
            match find(oid) {
                None => Ok(None),
                Some(v) => u8::from_der(v)
                    .map(Some)
                    .map_err(|e| Error::MalformedExtension {
                        oid,
                        reason: format!("expected a DER INTEGER 0..=255: {e}"),
                    }),
            }
        };
        let need =
            |oid: &'static str| -> Result<u8> { spl(oid)?.ok_or(Error::MissingExtension { oid }) };
        let tcb = Tcb {
            bootloader: need(OID_BL_SPL)?,
            tee: need(OID_TEE_SPL)?,
            snp: need(OID_SNP_SPL)?,
            microcode: need(OID_UCODE_SPL)?,
            fmc: spl(OID_FMC_SPL)?,
        };
        let hw_id = find(OID_HW_ID)
            .ok_or(Error::MissingExtension { oid: OID_HW_ID })?
            .to_vec();
        if hw_id.len() != 64 && hw_id.len() != 8 {
            return Err(Error::MalformedExtension {
                oid: OID_HW_ID,
                reason: format!("hwID is {} bytes, expected 64 (or 8 on Turin)", hw_id.len()),
            });
        }
        Ok(VcekExtensions { tcb, hw_id })
    }
}

/// Whether a VCEK hwID matches a report's CHIP_ID (an 8-byte Turin hwID matches a chip id whose
/// remaining 56 bytes are zero).
pub fn hw_id_matches(hw_id: &[u8], chip_id: &[u8; 64]) -> bool {
    hw_id.len() <= 64
        && chip_id[..hw_id.len()] == *hw_id
        && chip_id[hw_id.len()..].iter().all(|&b| b == 0)
}
