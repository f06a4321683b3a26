//! The SIMULATED attestation provider, for machines without SEV-SNP.
//!
//! This module exists so that development machines and CI can run the full attest → verify →
//! seal path. It offers NO hardware isolation: it builds a SIMULATED imitation of AMD's key
//! hierarchy (ARK → ASK → VCEK, ECDSA P-384/SHA-384, certificates made with `rcgen`) and signs
//! reports in AMD's exact format with the SIMULATED VCEK key, which sits in a file on disk.
//! Everything it makes says SIMULATED: certificate subjects, `Display`, log lines and the
//! `simulated` flag of the bundle, and the verifier refuses it unless its policy says
//! `allow_simulated`.

use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use p384::ecdsa::{signature::Signer, Signature, SigningKey};
use p384::pkcs8::DecodePrivateKey;
use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, PKCS_ECDSA_P384_SHA384,
};
use sha2::{Digest, Sha384};
use x509_cert::der::{DecodePem, Encode};

use crate::cert::ParsedCert;
use crate::error::{Error, Result};
use crate::provider::{AttestationProvider, RawEvidence};
use crate::report::{
    self, AttestationReport, FirmwareVersion, Tcb, TcbLayout, SIGNATURE_OFFSET, SIGNED_LEN,
    SIG_ALGO_ECDSA_P384_SHA384,
};

/// Subject CN of the SIMULATED ARK.
pub const SIM_ARK_CN: &str = "SIMULATED AMD ARK (Cloister sim, not AMD)";
/// Subject CN of the SIMULATED ASK.
pub const SIM_ASK_CN: &str = "SIMULATED AMD ASK (Cloister sim, not AMD)";
/// Subject CN of the SIMULATED VCEK.
pub const SIM_VCEK_CN: &str = "SIMULATED AMD VCEK (Cloister sim, not AMD)";
/// Organisation of every SIMULATED certificate.
pub const SIM_ORG: &str = "Cloister SIMULATED attestation";
/// The TCB the SIMULATED VCEK is issued for and the SIMULATED reports claim.
pub const SIM_TCB: Tcb = Tcb {
    bootloader: 4,
    tee: 0,
    snp: 22,
    microcode: 213,
    fmc: None,
};
/// Guest policy of SIMULATED reports: SMT allowed, reserved bit 17 set, debug and migration
/// agent off.
pub const SIM_POLICY: u64 = report::policy::SMT | report::policy::RESERVED_MBO;
/// Provider name written into bundles.
pub const SIM_PROVIDER_NAME: &str = "sim";

const ARK_FILE: &str = "ark.pem";
const ASK_FILE: &str = "ask.pem";
const VCEK_FILE: &str = "vcek.pem";
const VCEK_KEY_FILE: &str = "vcek-key.pem";

/// A SIMULATED AMD key hierarchy: certificates plus the SIMULATED firmware's VCEK signing key.
#[derive(Clone)]
pub struct SimRoot {
    ark_der: Vec<u8>,
    ask_der: Vec<u8>,
    vcek_der: Vec<u8>,
    vcek_key: SigningKey,
    chip_id: [u8; 64],
    tcb: Tcb,
}

impl fmt::Debug for SimRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimRoot (SIMULATED)")
            .field("chip_id", &hex::encode(self.chip_id))
            .field("tcb", &self.tcb)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for SimRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SIMULATED AMD key hierarchy (not AMD; no hardware isolation), chip id {}…",
            hex::encode(&self.chip_id[..8])
        )
    }
}

fn gen_err(e: rcgen::Error) -> Error {
    Error::SimGeneration(e.to_string())
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn params(cn: &str, ca: bool) -> Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, SIM_ORG);
    p.distinguished_name = dn;
    if ca {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    } else {
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    }
    Ok(p)
}

fn der_u8(v: u8) -> Result<Vec<u8>> {
    v.to_der()
        .map_err(|e| Error::SimGeneration(format!("DER INTEGER: {e}")))
}

fn spl_ext(last: u64, v: u8) -> Result<CustomExtension> {
    Ok(CustomExtension::from_oid_content(
        &[1, 3, 6, 1, 4, 1, 3704, 1, 3, last],
        der_u8(v)?,
    ))
}

impl SimRoot {
    /// Creates a new SIMULATED hierarchy with a random chip id and writes `ark.pem`, `ask.pem`,
    /// `vcek.pem` and `vcek-key.pem` (mode 0600) into `dir` (created if missing).
    pub fn generate(dir: &Path) -> Result<SimRoot> {
        tracing::warn!(dir = %dir.display(), "generating a SIMULATED AMD key hierarchy: evidence it signs offers no hardware isolation");
        let mut chip_id = [0u8; 64];
        rand::rngs::OsRng.fill_bytes(&mut chip_id);
        let tcb = SIM_TCB;

        let ark_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).map_err(gen_err)?;
        let ask_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).map_err(gen_err)?;
        let vcek_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).map_err(gen_err)?;

        let ark_params = params(SIM_ARK_CN, true)?;
        let ark_cert = ark_params.self_signed(&ark_key).map_err(gen_err)?;
        let ark_issuer = Issuer::from_params(&ark_params, &ark_key);

        let ask_params = params(SIM_ASK_CN, true)?;
        let ask_cert = ask_params
            .signed_by(&ask_key, &ark_issuer)
            .map_err(gen_err)?;
        let ask_issuer = Issuer::from_params(&ask_params, &ask_key);

        let mut vcek_params = params(SIM_VCEK_CN, false)?;
        vcek_params.custom_extensions = vec![
            spl_ext(1, tcb.bootloader)?,
            spl_ext(2, tcb.tee)?,
            spl_ext(3, tcb.snp)?,
            spl_ext(8, tcb.microcode)?,
            CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 3704, 1, 4], chip_id.to_vec()),
        ];
        let vcek_cert = vcek_params
            .signed_by(&vcek_key, &ask_issuer)
            .map_err(gen_err)?;

        let signing = SigningKey::from_pkcs8_der(&vcek_key.serialize_der())
            .map_err(|e| Error::SimGeneration(format!("VCEK key: {e}")))?;

        fs::create_dir_all(dir).map_err(io_err(dir))?;
        write_file(&dir.join(ARK_FILE), ark_cert.pem().as_bytes(), 0o644)?;
        write_file(&dir.join(ASK_FILE), ask_cert.pem().as_bytes(), 0o644)?;
        write_file(&dir.join(VCEK_FILE), vcek_cert.pem().as_bytes(), 0o644)?;
        write_file(
            &dir.join(VCEK_KEY_FILE),
            vcek_key.serialize_pem().as_bytes(),
            0o600,
        )?;

        Ok(SimRoot {
            ark_der: ark_cert.der().to_vec(),
            ask_der: ask_cert.der().to_vec(),
            vcek_der: vcek_cert.der().to_vec(),
            vcek_key: signing,
            chip_id,
            tcb,
        })
    }

    /// Loads a hierarchy written by [`SimRoot::generate`]; checks that the key matches the VCEK
    /// and reads the chip id and TCB back from the VCEK's extensions.
    pub fn load(dir: &Path) -> Result<SimRoot> {
        let ark_der = read_cert(&dir.join(ARK_FILE))?;
        let ask_der = read_cert(&dir.join(ASK_FILE))?;
        let vcek_der = read_cert(&dir.join(VCEK_FILE))?;
        let key_path = dir.join(VCEK_KEY_FILE);
        let key_pem = fs::read_to_string(&key_path).map_err(io_err(&key_path))?;
        let vcek_key = SigningKey::from_pkcs8_pem(&key_pem).map_err(|e| Error::Pem {
            path: key_path.clone(),
            reason: e.to_string(),
        })?;
        let vcek = ParsedCert::from_der("VCEK", &vcek_der)?;
        if vcek.p384_key()? != *vcek_key.verifying_key() {
            return Err(Error::Pem {
                path: key_path,
                reason: "key does not match the SIMULATED VCEK certificate".into(),
            });
        }
        let ext = vcek.vcek_extensions()?;
        let chip_id: [u8; 64] =
            ext.hw_id
                .as_slice()
                .try_into()
                .map_err(|_| Error::MalformedExtension {
                    oid: crate::cert::OID_HW_ID,
                    reason: "SIMULATED hwID must be 64 bytes".into(),
                })?;
        tracing::warn!(dir = %dir.display(), "loaded a SIMULATED AMD key hierarchy");
        Ok(SimRoot {
            ark_der,
            ask_der,
            vcek_der,
            vcek_key,
            chip_id,
            tcb: ext.tcb,
        })
    }

    /// The SIMULATED ARK certificate (DER): what a verifier pins to accept this hierarchy.
    pub fn ark_der(&self) -> &[u8] {
        &self.ark_der
    }
    /// The SIMULATED ASK certificate (DER).
    pub fn ask_der(&self) -> &[u8] {
        &self.ask_der
    }
    /// The SIMULATED VCEK certificate (DER).
    pub fn vcek_der(&self) -> &[u8] {
        &self.vcek_der
    }
    /// The SIMULATED chip id (the VCEK hwID).
    pub fn chip_id(&self) -> &[u8; 64] {
        &self.chip_id
    }
    /// The TCB the SIMULATED VCEK certifies.
    pub fn tcb(&self) -> Tcb {
        self.tcb
    }
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        opts.mode(mode);
        let mut f = opts.open(path).map_err(io_err(path))?;
        // The file may have existed with looser permissions: tighten before writing.
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io_err(path))?;
        f.write_all(bytes).map_err(io_err(path))?;
    }
    #[cfg(not(unix))]
    {
        let _ = mode;
        let mut f = opts.open(path).map_err(io_err(path))?;
        f.write_all(bytes).map_err(io_err(path))?;
    }
    Ok(())
}

fn read_cert(path: &PathBuf) -> Result<Vec<u8>> {
    let pem = fs::read_to_string(path).map_err(io_err(path))?;
    let cert = x509_cert::Certificate::from_pem(pem.as_bytes()).map_err(|e| Error::Pem {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    cert.to_der().map_err(|e| Error::Pem {
        path: path.clone(),
        reason: e.to_string(),
    })
}

/// The SIMULATED provider: signs AMD-format reports with a [`SimRoot`]'s VCEK key.
#[derive(Debug, Clone)]
pub struct SimProvider {
    root: SimRoot,
    measurement: [u8; 48],
    host_data: [u8; 32],
}

impl SimProvider {
    /// A SIMULATED provider reporting `measurement` (see [`measure_file`]).
    pub fn new(root: SimRoot, measurement: [u8; 48]) -> Self {
        tracing::warn!(
            measurement = %hex::encode(measurement),
            "using the SIMULATED attestation provider: NO hardware isolation"
        );
        Self {
            root,
            measurement,
            host_data: [0; 32],
        }
    }

    /// Sets `HOST_DATA`, as a launcher does at guest launch: Cloister's launcher puts the
    /// policy's SHA-256 there, so the policy is bound by the platform as well as by `REPORT_DATA`.
    pub fn with_host_data(mut self, host_data: [u8; 32]) -> Self {
        self.host_data = host_data;
        self
    }

    /// The measurement this provider reports.
    pub fn measurement(&self) -> &[u8; 48] {
        &self.measurement
    }

    /// The hierarchy this provider signs with.
    pub fn root(&self) -> &SimRoot {
        &self.root
    }
}

impl fmt::Display for SimProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SIMULATED SEV-SNP provider (no hardware isolation; not AMD), measurement {}",
            hex::encode(self.measurement)
        )
    }
}

impl AttestationProvider for SimProvider {
    fn name(&self) -> &str {
        SIM_PROVIDER_NAME
    }

    fn simulated(&self) -> bool {
        true
    }

    fn report(&self, report_data: [u8; 64]) -> Result<RawEvidence> {
        let mut report_id = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut report_id);
        let tcb = self.root.tcb.encode(TcbLayout::MilanGenoa);
        let r = AttestationReport {
            version: 3,
            guest_svn: 0,
            policy: SIM_POLICY,
            vmpl: 0,
            signature_algo: SIG_ALGO_ECDSA_P384_SHA384,
            current_tcb: tcb,
            platform_info: 1, // SMT enabled
            report_data,
            measurement: self.measurement,
            host_data: self.host_data,
            report_id,
            reported_tcb: tcb,
            cpuid_fam_id: 0x19, // Milan/Genoa family, so the TCB layout is MilanGenoa
            cpuid_mod_id: 0x01,
            cpuid_step: 0x01,
            chip_id: self.root.chip_id,
            committed_tcb: tcb,
            current: FirmwareVersion {
                build: 0,
                minor: 55,
                major: 1,
            },
            committed: FirmwareVersion {
                build: 0,
                minor: 55,
                major: 1,
            },
            launch_tcb: tcb,
            ..Default::default()
        };
        let mut bytes = r.to_bytes();
        let sig: Signature = self
            .root
            .vcek_key
            .try_sign(&bytes[..SIGNED_LEN])
            .map_err(|e| Error::SimSigning(e.to_string()))?;
        let enc = report::encode_signature(&sig);
        bytes[SIGNATURE_OFFSET..SIGNATURE_OFFSET + enc.len()].copy_from_slice(&enc);
        Ok(RawEvidence {
            report: bytes.to_vec(),
            vcek_der: self.root.vcek_der.clone(),
            ask_der: self.root.ask_der.clone(),
            ark_der: self.root.ark_der.clone(),
        })
    }
}

/// SHA-384 of a file: the SIMULATED measurement of the enclave binary.
pub fn measure_file(path: &Path) -> Result<[u8; 48]> {
    let mut f = fs::File::open(path).map_err(io_err(path))?;
    let mut h = Sha384::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}
