//! Semantic validation: from the spanned [`crate::raw`] structs to a [`Policy`], collecting every
//! rule violation with the position of the offending value. Pure: no IO.

use std::collections::HashMap;
use std::ops::Range;

use serde_spanned::Spanned;

use crate::raw::{RawPolicy, VersionProbe};
use crate::{
    Attestation, AuditSettings, HomomorphicSettings, Location, ModelEntry, ModelFormat, Policy,
    PolicyError, Provider, Sandbox, SandboxMode, Service, Tenant, SCHEMA_VERSION,
};

/// Parses `src` into a validated policy, or returns every problem found (never an empty list).
pub(crate) fn parse(src: &str, origin: &str, digest: [u8; 32]) -> Result<Policy, Vec<PolicyError>> {
    let ctx = Ctx { src, origin };
    let toml_err = |e: toml::de::Error| vec![PolicyError::from_toml(&e, origin, src)];

    // Version first, leniently: a file written for another schema should say so.
    let probe: VersionProbe = toml::from_str(src).map_err(toml_err)?;
    if let Some(v) = &probe.schema_version {
        if v.get_ref().as_integer() != Some(i64::from(SCHEMA_VERSION)) {
            return Err(vec![PolicyError::UnsupportedSchemaVersion {
                at: ctx.at(&v.span()),
                found: v.get_ref().to_string(),
            }]);
        }
    }
    let raw: RawPolicy = toml::from_str(src).map_err(toml_err)?;

    let mut errors = Vec::new();
    let service = ctx.service(&raw, &mut errors);
    let attestation = ctx.attestation(&raw, &mut errors);
    let models = ctx.models(&raw, &mut errors);
    let tenants = ctx.tenants(&raw, &mut errors);
    let privacy = {
        let at = |span: &Range<usize>| ctx.at(span);
        let mut check = crate::privacy::Check {
            at: &at,
            errors: &mut errors,
        };
        check.settings(raw.privacy.as_ref())
    };
    ctx.privacy_consistency(&raw, &tenants, &models, &mut errors);
    // `[sandbox]` is optional: absent means `enforce` with the default limits.
    let sandbox = ctx.sandbox(&raw, &mut errors);
    // `[audit]` is optional: absent means 64 MiB segments, no rotation by age, nothing deleted.
    let audit = ctx.audit(&raw, &mut errors);
    // `[homomorphic]` is optional: absent means the defaults of [`HomomorphicSettings`].
    let homomorphic = ctx.homomorphic(&raw, &models, &mut errors);

    for (section, empty) in [
        ("tenants", raw.tenants.is_empty()),
        ("models", raw.models.is_empty()),
    ] {
        if empty {
            errors.push(PolicyError::MissingSection {
                at: Location::at_offset(origin, src, src.len()),
                section,
            });
        }
    }

    if !errors.is_empty() {
        errors.sort_by_key(|e| (e.line(), e.column()));
        return Err(errors);
    }
    Ok(Policy {
        schema_version: SCHEMA_VERSION,
        service,
        attestation,
        tenants,
        models,
        sandbox,
        privacy,
        audit,
        homomorphic,
        base_dir: Default::default(),
        digest,
        origin: origin.to_string(),
    })
}

struct Ctx<'a> {
    src: &'a str,
    origin: &'a str,
}

impl Ctx<'_> {
    fn at(&self, span: &Range<usize>) -> Location {
        Location::of_span(self.origin, self.src, span)
    }

    /// The byte offset of the `i`-th character of a string value's contents: skips the opening
    /// quote when the value is written as a plain string (escapes make this approximate, never
    /// out of bounds).
    fn content_offset(&self, value: &Spanned<String>, char_index: usize) -> usize {
        let span = value.span();
        let raw = self.src.get(span.clone()).unwrap_or_default();
        let start = match raw.find(value.get_ref().as_str()) {
            Some(i) if !value.get_ref().is_empty() => span.start + i,
            _ => span.start,
        };
        let byte_index = value
            .get_ref()
            .char_indices()
            .nth(char_index)
            .map_or(0, |(b, _)| b);
        start + byte_index
    }

    fn positive(
        &self,
        v: &Spanned<u64>,
        field: &'static str,
        errors: &mut Vec<PolicyError>,
    ) -> u64 {
        if *v.get_ref() == 0 {
            errors.push(PolicyError::ZeroLimit {
                at: self.at(&v.span()),
                field,
            });
        }
        *v.get_ref()
    }

    fn id(&self, v: &Spanned<String>, what: &'static str, errors: &mut Vec<PolicyError>) -> String {
        let id = v.get_ref();
        let bad = id.chars().enumerate().find(|&(i, c)| {
            let ok_first = c.is_ascii_lowercase() || c.is_ascii_digit();
            !(ok_first || (i > 0 && matches!(c, '.' | '_' | '-')))
        });
        if id.is_empty() {
            errors.push(PolicyError::Empty {
                at: self.at(&v.span()),
                field: "id",
            });
        } else if let Some((i, _)) = bad {
            errors.push(PolicyError::InvalidId {
                at: Location::at_offset(self.origin, self.src, self.content_offset(v, i)),
                what,
                id: id.clone(),
            });
        }
        id.clone()
    }

    fn digest<const N: usize>(
        &self,
        v: &Spanned<String>,
        field: &'static str,
        errors: &mut Vec<PolicyError>,
    ) -> [u8; N] {
        let text = v.get_ref();
        let mut out = [0u8; N];
        if let Some((i, c)) = text
            .chars()
            .enumerate()
            .find(|(_, c)| !c.is_ascii_hexdigit())
        {
            errors.push(PolicyError::InvalidDigest {
                at: Location::at_offset(self.origin, self.src, self.content_offset(v, i)),
                field,
                expected_hex_chars: 2 * N,
                problem: format!("'{}' is not a hexadecimal digit", c.escape_debug()),
            });
        } else if text.len() != 2 * N {
            errors.push(PolicyError::InvalidDigest {
                at: self.at(&v.span()),
                field,
                expected_hex_chars: 2 * N,
                problem: format!("found {} characters", text.len()),
            });
        } else if hex::decode_to_slice(text, &mut out).is_err() {
            // Unreachable after the checks above, but never panic on input.
            errors.push(PolicyError::InvalidDigest {
                at: self.at(&v.span()),
                field,
                expected_hex_chars: 2 * N,
                problem: "not valid hex".into(),
            });
        }
        out
    }

    /// An optional integer that must lie in `min..=max`; out of range is an error at its span
    /// (the value is still returned so validation can go on and report every problem).
    fn ranged(
        &self,
        v: Option<&Spanned<u64>>,
        field: &'static str,
        (min, max): (u64, u64),
        errors: &mut Vec<PolicyError>,
    ) -> Option<u64> {
        v.map(|v| {
            let n = *v.get_ref();
            if !(min..=max).contains(&n) {
                errors.push(PolicyError::OutOfRange {
                    at: self.at(&v.span()),
                    field,
                    min,
                    max,
                });
            }
            n
        })
    }

    fn sandbox(&self, raw: &RawPolicy, errors: &mut Vec<PolicyError>) -> Sandbox {
        let s = raw.sandbox.as_ref();
        let mut ranged = |v: Option<&Spanned<u64>>, field: &'static str, range: (u64, u64)| {
            self.ranged(v, field, range, errors)
        };
        Sandbox {
            mode: s
                .and_then(|s| s.mode.as_ref())
                .map_or(SandboxMode::Enforce, |m| *m.get_ref()),
            max_concurrent_requests: ranged(
                s.and_then(|s| s.max_concurrent_requests.as_ref()),
                "max_concurrent_requests",
                Sandbox::MAX_CONCURRENT_REQUESTS_RANGE,
            )
            .unwrap_or(Sandbox::DEFAULT_MAX_CONCURRENT_REQUESTS),
            worker_memory_mb: ranged(
                s.and_then(|s| s.worker_memory_mb.as_ref()),
                "worker_memory_mb",
                Sandbox::WORKER_MEMORY_MB_RANGE,
            )
            .unwrap_or(Sandbox::DEFAULT_WORKER_MEMORY_MB),
            enclave_memory_mb: ranged(
                s.and_then(|s| s.enclave_memory_mb.as_ref()),
                "enclave_memory_mb",
                Sandbox::ENCLAVE_MEMORY_MB_RANGE,
            ),
        }
    }

    /// `[homomorphic]`'s limits, and `[models.homomorphic] tenants` naming tenants that exist
    /// and are allowed the model.
    fn homomorphic(
        &self,
        raw: &RawPolicy,
        models: &[ModelEntry],
        errors: &mut Vec<PolicyError>,
    ) -> HomomorphicSettings {
        for (entry, rm) in models.iter().zip(&raw.models) {
            let Some(ts) = rm
                .homomorphic
                .as_ref()
                .and_then(|h| h.get_ref().tenants.as_ref())
            else {
                continue;
            };
            for t in ts {
                let tenant = raw.tenants.iter().find(|rt| rt.id.get_ref() == t.get_ref());
                let allowed =
                    tenant.is_some_and(|rt| rt.models.iter().any(|m| m.get_ref() == &entry.id));
                if !allowed {
                    errors.push(PolicyError::InvalidHomomorphic {
                        at: self.at(&t.span()),
                        message: format!(
                            "tenant \"{}\" is listed for model \"{}\" but {}",
                            t.get_ref(),
                            entry.id,
                            if tenant.is_some() {
                                "is not allowed that model in its `models`"
                            } else {
                                "no such tenant exists"
                            }
                        ),
                        hint: "list only tenants that exist and have this model in their `models`"
                            .into(),
                    });
                }
            }
        }
        let h = raw.homomorphic.as_ref();
        let mut ranged = |v: Option<&Spanned<u64>>, field: &'static str, range: (u64, u64)| {
            self.ranged(v, field, range, errors)
        };
        HomomorphicSettings {
            max_server_key_bytes: ranged(
                h.and_then(|h| h.max_server_key_bytes.as_ref()),
                "max_server_key_bytes",
                HomomorphicSettings::MAX_SERVER_KEY_BYTES_RANGE,
            )
            .unwrap_or(HomomorphicSettings::DEFAULT_MAX_SERVER_KEY_BYTES),
            max_keys_per_tenant: ranged(
                h.and_then(|h| h.max_keys_per_tenant.as_ref()),
                "max_keys_per_tenant",
                HomomorphicSettings::MAX_KEYS_PER_TENANT_RANGE,
            )
            .unwrap_or(HomomorphicSettings::DEFAULT_MAX_KEYS_PER_TENANT),
            key_cache_entries: ranged(
                h.and_then(|h| h.key_cache_entries.as_ref()),
                "key_cache_entries",
                HomomorphicSettings::KEY_CACHE_ENTRIES_RANGE,
            )
            .unwrap_or(HomomorphicSettings::DEFAULT_KEY_CACHE_ENTRIES),
        }
    }

    fn audit(&self, raw: &RawPolicy, errors: &mut Vec<PolicyError>) -> AuditSettings {
        let a = raw.audit.as_ref();
        let mut ranged = |v: Option<&Spanned<u64>>, field: &'static str, range: (u64, u64)| {
            self.ranged(v, field, range, errors)
        };
        AuditSettings {
            segment_max_bytes: ranged(
                a.and_then(|a| a.segment_max_bytes.as_ref()),
                "segment_max_bytes",
                AuditSettings::SEGMENT_MAX_BYTES_RANGE,
            )
            .unwrap_or(AuditSettings::DEFAULT_SEGMENT_MAX_BYTES),
            segment_max_age_secs: ranged(
                a.and_then(|a| a.segment_max_age_secs.as_ref()),
                "segment_max_age_secs",
                AuditSettings::SEGMENT_MAX_AGE_SECS_RANGE,
            ),
            retain_segments: ranged(
                a.and_then(|a| a.retain_segments.as_ref()),
                "retain_segments",
                AuditSettings::RETAIN_SEGMENTS_RANGE,
            ),
            retain_days: ranged(
                a.and_then(|a| a.retain_days.as_ref()),
                "retain_days",
                AuditSettings::RETAIN_DAYS_RANGE,
            ),
        }
    }

    fn service(&self, raw: &RawPolicy, errors: &mut Vec<PolicyError>) -> Service {
        let s = &raw.service;
        if s.name.get_ref().trim().is_empty() {
            errors.push(PolicyError::Empty {
                at: self.at(&s.name.span()),
                field: "name",
            });
        }
        Service {
            name: s.name.get_ref().clone(),
            max_request_bytes: self.positive(&s.max_request_bytes, "max_request_bytes", errors),
            request_timeout_ms: self.positive(&s.request_timeout_ms, "request_timeout_ms", errors),
            max_batch_rows: self.positive(&s.max_batch_rows, "max_batch_rows", errors),
            replay_window_secs: self.positive(&s.replay_window_secs, "replay_window_secs", errors),
        }
    }

    fn attestation(&self, raw: &RawPolicy, errors: &mut Vec<PolicyError>) -> Attestation {
        let a = &raw.attestation;
        let provider = *a.provider.get_ref();
        let allow_simulated = a.allow_simulated.as_ref().is_some_and(|v| *v.get_ref());
        if provider == Provider::Sim && !allow_simulated {
            // Point at `allow_simulated = false` if written, else at the provider.
            let span = a
                .allow_simulated
                .as_ref()
                .map_or_else(|| a.provider.span(), |v| v.span());
            errors.push(PolicyError::SimulatedNotAllowed { at: self.at(&span) });
        }
        Attestation {
            provider,
            allow_simulated,
            expected_measurements: a
                .expected_measurements
                .iter()
                .map(|m| self.digest::<48>(m, "expected_measurements", errors))
                .collect(),
        }
    }

    fn models(&self, raw: &RawPolicy, errors: &mut Vec<PolicyError>) -> Vec<ModelEntry> {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let mut out = Vec::new();
        for m in &raw.models {
            let id = self.id(&m.id, "model", errors);
            if let Some(&first_line) = seen.get(m.id.get_ref().as_str()) {
                errors.push(PolicyError::DuplicateId {
                    at: self.at(&m.id.span()),
                    what: "model",
                    id: id.clone(),
                    first_line,
                });
            } else {
                seen.insert(m.id.get_ref(), self.at(&m.id.span()).line);
            }
            if m.path.get_ref().trim().is_empty() {
                errors.push(PolicyError::Empty {
                    at: self.at(&m.path.span()),
                    field: "path",
                });
            }
            let privacy = {
                let at = |span: &Range<usize>| self.at(span);
                let mut check = crate::privacy::Check { at: &at, errors };
                let table = m.privacy.as_ref().map_or_else(|| m.id.span(), |p| p.span());
                check.model(m.privacy.as_ref().map(|p| p.get_ref()), &table)
            };
            let format = m
                .format
                .as_ref()
                .map_or(ModelFormat::Onnx, |f| *f.get_ref());
            if format == ModelFormat::HeProgram {
                if let Some(p) = &m.privacy {
                    errors.push(PolicyError::InvalidHomomorphic {
                        at: self.at(&p.span()),
                        message: format!(
                            "model \"{id}\" is evaluated on ciphertexts (format = \"he-program\"), \
                             so the enclave cannot add noise to or count its outputs"
                        ),
                        hint: "remove [models.privacy] from this model, or serve an ONNX model"
                            .into(),
                    });
                }
            } else if let Some(h) = &m.homomorphic {
                errors.push(PolicyError::InvalidHomomorphic {
                    at: self.at(&h.span()),
                    message: format!(
                        "[models.homomorphic] applies to homomorphic models, and model \"{id}\" \
                         is ONNX"
                    ),
                    hint: "add `format = \"he-program\"` with an integer program as `path`, or \
                           remove [models.homomorphic]"
                        .into(),
                });
            }
            out.push(ModelEntry {
                id,
                path: m.path.get_ref().into(),
                sha256: self.digest::<32>(&m.sha256, "sha256", errors),
                description: m.description.clone(),
                privacy,
                format,
                he_tenants: m
                    .homomorphic
                    .as_ref()
                    .and_then(|h| h.get_ref().tenants.as_ref())
                    .map(|ts| ts.iter().map(|t| t.get_ref().clone()).collect()),
            });
        }
        out
    }

    fn tenants(&self, raw: &RawPolicy, errors: &mut Vec<PolicyError>) -> Vec<Tenant> {
        let known: Vec<String> = raw.models.iter().map(|m| m.id.get_ref().clone()).collect();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let mut keys: HashMap<[u8; 32], String> = HashMap::new();
        let mut out = Vec::new();
        for t in &raw.tenants {
            let id = self.id(&t.id, "tenant", errors);
            if let Some(&first_line) = seen.get(t.id.get_ref().as_str()) {
                errors.push(PolicyError::DuplicateId {
                    at: self.at(&t.id.span()),
                    what: "tenant",
                    id: id.clone(),
                    first_line,
                });
            } else {
                seen.insert(t.id.get_ref(), self.at(&t.id.span()).line);
            }
            let before = errors.len();
            let key = self.digest::<32>(&t.api_key_sha256, "api_key_sha256", errors);
            if errors.len() == before {
                if let Some(other) = keys.get(&key) {
                    errors.push(PolicyError::DuplicateApiKey {
                        at: self.at(&t.api_key_sha256.span()),
                        tenant: id.clone(),
                        other: other.clone(),
                    });
                } else {
                    keys.insert(key, id.clone());
                }
            }
            for m in &t.models {
                if !known.contains(m.get_ref()) {
                    errors.push(PolicyError::UnknownModel {
                        at: self.at(&m.span()),
                        tenant: id.clone(),
                        model: m.get_ref().clone(),
                        known: known.clone(),
                    });
                }
            }
            out.push(Tenant {
                id,
                api_key_sha256: key,
                models: t.models.iter().map(|m| m.get_ref().clone()).collect(),
                max_requests_per_minute: self.positive(
                    &t.max_requests_per_minute,
                    "max_requests_per_minute",
                    errors,
                ),
                budget: t.budget_rho.as_ref().map(|v| {
                    let at = |span: &Range<usize>| self.at(span);
                    crate::privacy::Check { at: &at, errors }.rho(v, "budget_rho")
                }),
            });
        }
        out
    }

    /// A tenant allowed a charged model must have a budget: an uncapped tenant would make the
    /// model's guarantee meaningless.
    fn privacy_consistency(
        &self,
        raw: &RawPolicy,
        tenants: &[Tenant],
        models: &[ModelEntry],
        errors: &mut Vec<PolicyError>,
    ) {
        for (t, rt) in tenants.iter().zip(&raw.tenants) {
            if t.budget.is_some() {
                continue;
            }
            for (m, rm) in t.models.iter().zip(&rt.models) {
                if models.iter().any(|e| &e.id == m && e.privacy.charges()) {
                    errors.push(PolicyError::InvalidPrivacy {
                        at: self.at(&rm.span()),
                        message: format!(
                            "tenant \"{}\" may use model \"{m}\", whose releases are charged, \
                             but has no budget_rho",
                            t.id
                        ),
                        hint: "add `budget_rho = ...` to this tenant (its total zCDP budget)"
                            .into(),
                    });
                }
            }
        }
    }
}
