//! [`PolicyError`]: every way a policy file can be unusable, each pointing at a file, line and
//! column with a hint that says how to fix it.
//!
//! Operators edit policy files by hand, often under pressure; an error that names the exact spot
//! and the repair is the difference between a one-minute fix and an outage. Positions are 1-based
//! and columns count characters, not bytes, so they match what editors show.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

/// A position in a policy source: file name (as given by the caller), 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file name used in messages.
    pub origin: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl Location {
    /// The location of byte `offset` in `src` (clamped to the source; never panics).
    pub fn at_offset(origin: &str, src: &str, offset: usize) -> Location {
        let mut offset = offset.min(src.len());
        while !src.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &src[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Location {
            origin: origin.to_string(),
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }

    /// The location of the start of `span`.
    pub(crate) fn of_span(origin: &str, src: &str, span: &Range<usize>) -> Location {
        Location::at_offset(origin, src, span.start)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.origin, self.line, self.column)
    }
}

/// Why a policy could not be loaded. Every variant but [`PolicyError::Read`] carries a
/// [`Location`]; `Display` renders `file:line:column: message — fix: hint`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The file could not be read at all (no position to report).
    #[error("{}: cannot read policy file: {source} — fix: {}", path.display(), self.hint())]
    Read {
        /// The path that was tried.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The file is not UTF-8; `at` is the first offending byte.
    #[error("{}", self.render())]
    NotUtf8 {
        /// Where.
        at: Location,
    },
    /// The text is not valid TOML.
    #[error("{}", self.render())]
    Syntax {
        /// Where.
        at: Location,
        /// The TOML parser's description.
        message: String,
    },
    /// A key that the schema does not know (often a typo).
    #[error("{}", self.render())]
    UnknownField {
        /// Where the key is.
        at: Location,
        /// The key as written.
        field: String,
        /// The keys accepted in this table.
        expected: Vec<String>,
    },
    /// A required key is absent.
    #[error("{}", self.render())]
    MissingField {
        /// The table that lacks it.
        at: Location,
        /// The missing key.
        field: String,
    },
    /// A value has the wrong type or is out of range for its type (e.g. a quoted number, a
    /// negative limit, an unknown provider name).
    #[error("{}", self.render())]
    WrongType {
        /// Where the value is.
        at: Location,
        /// The deserializer's description, naming what was expected.
        message: String,
    },
    /// `schema_version` is not 1.
    #[error("{}", self.render())]
    UnsupportedSchemaVersion {
        /// Where the value is.
        at: Location,
        /// The value as written.
        found: String,
    },
    /// An id does not match `[a-z0-9][a-z0-9._-]*`.
    #[error("{}", self.render())]
    InvalidId {
        /// Where the first bad character is.
        at: Location,
        /// `"tenant"` or `"model"`.
        what: &'static str,
        /// The id as written.
        id: String,
    },
    /// Two tenants, or two models, share an id.
    #[error("{}", self.render())]
    DuplicateId {
        /// Where the second use is.
        at: Location,
        /// `"tenant"` or `"model"`.
        what: &'static str,
        /// The id.
        id: String,
        /// The line of the first use.
        first_line: usize,
    },
    /// A tenant lists a model that no `[[models]]` entry defines.
    #[error("{}", self.render())]
    UnknownModel {
        /// Where the model name is.
        at: Location,
        /// The tenant's id.
        tenant: String,
        /// The model name as written.
        model: String,
        /// The model ids the policy does define.
        known: Vec<String>,
    },
    /// A hex digest has the wrong length or a non-hex character.
    #[error("{}", self.render())]
    InvalidDigest {
        /// Where the value (or its first bad character) is.
        at: Location,
        /// The key, e.g. `"api_key_sha256"`.
        field: &'static str,
        /// How many hex characters the digest needs.
        expected_hex_chars: usize,
        /// What is wrong with it.
        problem: String,
    },
    /// Two tenants have the same API key hash, so a key would not identify one tenant.
    #[error("{}", self.render())]
    DuplicateApiKey {
        /// Where the second use is.
        at: Location,
        /// The tenant with the duplicate.
        tenant: String,
        /// The tenant that has it first.
        other: String,
    },
    /// `provider = "sim"` without an explicit `allow_simulated = true`.
    #[error("{}", self.render())]
    SimulatedNotAllowed {
        /// Where the provider (or the `allow_simulated = false`) is.
        at: Location,
    },
    /// A limit that must be positive is zero.
    #[error("{}", self.render())]
    ZeroLimit {
        /// Where the value is.
        at: Location,
        /// The key.
        field: &'static str,
    },
    /// A number outside its allowed range.
    #[error("{}", self.render())]
    OutOfRange {
        /// Where the value is.
        at: Location,
        /// The key.
        field: &'static str,
        /// Smallest allowed value.
        min: u64,
        /// Largest allowed value.
        max: u64,
    },
    /// A value that must not be empty is empty.
    #[error("{}", self.render())]
    Empty {
        /// Where the value is.
        at: Location,
        /// The key.
        field: &'static str,
    },
    /// The policy has no `[[tenants]]` or no `[[models]]`, so it could serve nobody.
    #[error("{}", self.render())]
    MissingSection {
        /// The end of the file, where the section could be added.
        at: Location,
        /// `"tenants"` or `"models"`.
        section: &'static str,
    },
    /// A differential-privacy setting is invalid or inconsistent.
    #[error("{}", self.render())]
    InvalidPrivacy {
        /// Where the value (or the table) is.
        at: Location,
        /// What is wrong.
        message: String,
        /// How to fix it.
        hint: String,
    },
    /// A homomorphic-mode setting (`format = "he-program"`, `[models.homomorphic]`,
    /// `[homomorphic]`) is invalid or inconsistent.
    #[error("{}", self.render())]
    InvalidHomomorphic {
        /// Where the value (or the table) is.
        at: Location,
        /// What is wrong.
        message: String,
        /// How to fix it.
        hint: String,
    },
}

impl PolicyError {
    /// The position of the problem, if it has one (all but [`PolicyError::Read`]).
    pub fn location(&self) -> Option<&Location> {
        use PolicyError::*;
        match self {
            Read { .. } => None,
            NotUtf8 { at }
            | Syntax { at, .. }
            | UnknownField { at, .. }
            | MissingField { at, .. }
            | WrongType { at, .. }
            | UnsupportedSchemaVersion { at, .. }
            | InvalidId { at, .. }
            | DuplicateId { at, .. }
            | UnknownModel { at, .. }
            | InvalidDigest { at, .. }
            | DuplicateApiKey { at, .. }
            | SimulatedNotAllowed { at }
            | ZeroLimit { at, .. }
            | OutOfRange { at, .. }
            | Empty { at, .. }
            | MissingSection { at, .. }
            | InvalidPrivacy { at, .. }
            | InvalidHomomorphic { at, .. } => Some(at),
        }
    }

    /// 1-based line, or 0 for [`PolicyError::Read`], which has no position.
    pub fn line(&self) -> usize {
        self.location().map_or(0, |l| l.line)
    }

    /// 1-based column in characters, or 0 for [`PolicyError::Read`].
    pub fn column(&self) -> usize {
        self.location().map_or(0, |l| l.column)
    }

    /// The file name used in messages.
    pub fn origin(&self) -> String {
        match self {
            PolicyError::Read { path, .. } => path.display().to_string(),
            other => other
                .location()
                .map(|l| l.origin.clone())
                .unwrap_or_default(),
        }
    }

    /// What is wrong, without position or hint.
    pub fn message(&self) -> String {
        use PolicyError::*;
        match self {
            Read { path, source } => {
                format!("cannot read policy file {}: {source}", path.display())
            }
            NotUtf8 { .. } => "the policy file is not valid UTF-8".into(),
            Syntax { message, .. } => format!("invalid TOML: {message}"),
            UnknownField {
                field, expected, ..
            } => format!(
                "unknown field `{field}`, expected {}",
                if expected.is_empty() {
                    "no fields here".to_string()
                } else {
                    format!("one of {}", quote_list(expected))
                }
            ),
            MissingField { field, .. } => format!("missing field `{field}`"),
            WrongType { message, .. } => message.clone(),
            UnsupportedSchemaVersion { found, .. } => {
                format!("unsupported schema_version {found}")
            }
            InvalidId { what, id, .. } => format!(
                "{what} id \"{}\" is not of the form [a-z0-9][a-z0-9._-]*",
                id.escape_debug()
            ),
            DuplicateId {
                what,
                id,
                first_line,
                ..
            } => format!("duplicate {what} id \"{id}\" (first defined on line {first_line})"),
            UnknownModel { tenant, model, .. } => {
                format!("tenant \"{tenant}\" refers to unknown model \"{model}\"")
            }
            InvalidDigest {
                field,
                expected_hex_chars,
                problem,
                ..
            } => {
                format!("`{field}` must be {expected_hex_chars} hexadecimal characters: {problem}")
            }
            DuplicateApiKey { tenant, other, .. } => {
                format!("tenant \"{tenant}\" has the same api_key_sha256 as tenant \"{other}\"")
            }
            SimulatedNotAllowed { .. } => {
                "provider \"sim\" (simulated attestation, no hardware protection) is selected \
                 but allow_simulated is not true"
                    .into()
            }
            ZeroLimit { field, .. } => format!("`{field}` must be greater than 0"),
            OutOfRange {
                field, min, max, ..
            } => {
                format!("`{field}` must be between {min} and {max}")
            }
            Empty { field, .. } => format!("`{field}` must not be empty"),
            MissingSection { section, .. } => format!("the policy defines no [[{section}]]"),
            InvalidPrivacy { message, .. } | InvalidHomomorphic { message, .. } => message.clone(),
        }
    }

    /// How to fix it.
    pub fn hint(&self) -> String {
        use PolicyError::*;
        match self {
            Read { .. } => "check the path and the file's permissions".into(),
            NotUtf8 { .. } => "save the file as UTF-8".into(),
            Syntax { .. } => "correct the TOML syntax at this position \
                              (policies/examples/dev.toml is a valid example)"
                .into(),
            UnknownField {
                field, expected, ..
            } => match closest(field, expected) {
                Some(best) => format!("rename `{field}` to `{best}`, or remove it"),
                None => format!("remove `{field}` or correct its name"),
            },
            MissingField { field, .. } => format!("add `{field} = ...` to this table"),
            WrongType { .. } => "write a value of the expected type (numbers and booleans \
                                 without quotes, strings in quotes)"
                .into(),
            UnsupportedSchemaVersion { .. } => {
                "set schema_version = 1, the only version this build understands".into()
            }
            InvalidId { .. } => "use lowercase letters, digits, '.', '_' and '-', starting with \
                                 a letter or digit"
                .into(),
            DuplicateId { what, .. } => format!("give each {what} a unique id"),
            UnknownModel { model, known, .. } => format!(
                "add a [[models]] entry with id = \"{model}\" or correct the name (known models: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
            InvalidDigest {
                field,
                expected_hex_chars,
                ..
            } => {
                let tool = if *expected_hex_chars == 96 {
                    "sha384sum"
                } else {
                    "sha256sum"
                };
                format!("set `{field}` to the {expected_hex_chars}-character hex output of `{tool}`")
            }
            DuplicateApiKey { .. } => "give every tenant its own API key".into(),
            SimulatedNotAllowed { .. } => "for development set `allow_simulated = true` in \
                                           [attestation]; in production use provider = \"snp\""
                .into(),
            ZeroLimit { field, .. } => format!("set `{field}` to a positive number"),
            OutOfRange { field, min, max, .. } => {
                format!("set `{field}` to a value from {min} to {max}")
            }
            Empty { field, .. } => format!("give `{field}` a value"),
            MissingSection { section, .. } => {
                format!("add at least one [[{section}]] table")
            }
            InvalidPrivacy { hint, .. } | InvalidHomomorphic { hint, .. } => hint.clone(),
        }
    }

    fn render(&self) -> String {
        match self.location() {
            Some(at) => format!("{at}: {} — fix: {}", self.message(), self.hint()),
            None => format!("{} — fix: {}", self.message(), self.hint()),
        }
    }

    /// Classifies a TOML deserialization error by serde's standard message shapes.
    pub(crate) fn from_toml(err: &toml::de::Error, origin: &str, src: &str) -> PolicyError {
        let at = Location::at_offset(origin, src, err.span().map_or(0, |s| s.start));
        let message = err.message().trim().to_string();
        if let Some(rest) = message.strip_prefix("unknown field ") {
            let mut names = backticked(rest).into_iter();
            let field = names.next().unwrap_or_default();
            return PolicyError::UnknownField {
                at,
                field,
                expected: names.collect(),
            };
        }
        if let Some(rest) = message.strip_prefix("missing field ") {
            let field = backticked(rest).into_iter().next().unwrap_or_default();
            return PolicyError::MissingField { at, field };
        }
        const TYPE_ERRORS: [&str; 5] = [
            "invalid type",
            "invalid value",
            "invalid length",
            "unknown variant",
            "out of range",
        ];
        if TYPE_ERRORS.iter().any(|p| message.starts_with(p)) {
            return PolicyError::WrongType { at, message };
        }
        PolicyError::Syntax { at, message }
    }
}

/// Writes all errors, one per line.
pub fn render_errors(errors: &[PolicyError]) -> String {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

fn quote_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `backtick-quoted` words in serde's messages, in order.
fn backticked(s: &str) -> Vec<String> {
    s.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// The expected name nearest to `word`, if it is close enough to be a plausible typo.
fn closest<'a>(word: &str, candidates: &'a [String]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), c.as_str()))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_counts_characters() {
        let src = "a = 1\nné = \"x\"\n";
        let off = src.find("= \"x").unwrap();
        let loc = Location::at_offset("p.toml", src, off);
        assert_eq!((loc.line, loc.column), (2, 4));
        let end = Location::at_offset("p.toml", src, 10_000);
        assert_eq!((end.line, end.column), (3, 1));
        // Inside a multi-byte character: clamps back, does not panic.
        let mid = Location::at_offset("p.toml", src, src.find('é').unwrap() + 1);
        assert_eq!((mid.line, mid.column), (2, 2));
    }

    #[test]
    fn suggests_close_names_only() {
        let expected: Vec<String> = ["schema_version", "service", "tenants", "models"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(closest("tenantz", &expected), Some("tenants"));
        assert_eq!(closest("modles", &expected), Some("models"));
        assert_eq!(closest("completely_else", &expected), None);
    }
}
