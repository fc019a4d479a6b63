//! Authorization of mutating endpoints (every `PUT`, `POST` and `DELETE`).
//!
//! With a token configured (`[control] token_file` or `token_env`, read once at start), a
//! request needs `Authorization: Bearer <token>`, compared in constant time: 401 when the
//! header is missing, malformed or wrong. Without a token, mutating endpoints answer only when
//! the control listener is a loopback address (anyone who can reach it can already signal the
//! process); on any other address they answer 403. The token is never logged or echoed: its
//! `Debug` is redacted.

use crate::{errors, ControlState};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use std::io::Read;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use switchyard_core::config::ControlConfig;

/// Largest token file read.
const MAX_TOKEN_FILE_BYTES: u64 = 64 << 10;

/// A bearer token (its `Debug` never shows it).
#[derive(Clone)]
pub struct Token(Arc<[u8]>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// A token from its bytes (surrounding whitespace trimmed); `None` when empty.
    pub fn new(bytes: &[u8]) -> Option<Self> {
        let t = bytes.trim_ascii();
        (!t.is_empty()).then(|| Token(Arc::from(t)))
    }

    /// Reads the token `[control]` names, if any.
    ///
    /// # Errors
    /// A message naming the file or variable when it is missing, unreadable or empty (never
    /// the token).
    pub fn load(cfg: &ControlConfig) -> Result<Option<Self>, String> {
        if let Some(path) = &cfg.token_file {
            let mut text = Vec::new();
            #[allow(clippy::disallowed_methods)] // capped by `take`
            std::fs::File::open(path)
                .and_then(|f| f.take(MAX_TOKEN_FILE_BYTES + 1).read_to_end(&mut text))
                .map_err(|e| format!("reading token_file {}: {e}", path.display()))?;
            if text.len() as u64 > MAX_TOKEN_FILE_BYTES {
                return Err(format!(
                    "token_file {}: larger than {MAX_TOKEN_FILE_BYTES} bytes",
                    path.display()
                ));
            }
            return Token::new(&text)
                .map(Some)
                .ok_or_else(|| format!("token_file {}: empty", path.display()));
        }
        if let Some(var) = &cfg.token_env {
            let v = std::env::var_os(var)
                .ok_or_else(|| format!("token_env: environment variable {var} is not set"))?;
            return Token::new(v.as_encoded_bytes())
                .map(Some)
                .ok_or_else(|| format!("token_env: environment variable {var} is empty"));
        }
        Ok(None)
    }

    fn matches(&self, presented: &[u8]) -> bool {
        bool::from(self.0.as_ref().ct_eq(presented))
    }
}

/// Checks that a mutating request may proceed; the error is the response to send.
#[allow(clippy::result_large_err)] // the error is the response itself, built once
pub(crate) fn authorize(st: &ControlState, headers: &HeaderMap) -> Result<(), Response> {
    let Some(token) = &st.token else {
        if st.loopback_listener {
            return Ok(());
        }
        return Err(errors(
            StatusCode::FORBIDDEN,
            vec![
                "mutating endpoints are disabled: no [control] token_file or token_env is \
                  configured and the control listener is not a loopback address"
                    .into(),
            ],
        ));
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes)
        .and_then(bearer);
    match presented {
        None => Err(unauthorized(
            "missing credentials: send `Authorization: Bearer <token>`",
        )),
        Some(p) if token.matches(p) => Ok(()),
        Some(_) => Err(unauthorized("invalid bearer token")),
    }
}

/// The credentials of `Bearer <credentials>` (scheme case-insensitive).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || rest.first().is_none_or(|b| *b != b' ') {
        return None;
    }
    let t = rest.trim_ascii();
    (!t.is_empty()).then_some(t)
}

fn unauthorized(msg: &str) -> Response {
    let mut r = errors(StatusCode::UNAUTHORIZED, vec![msg.into()]);
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"switchyard\""),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer   abc "), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Bearer "), None);
        assert_eq!(bearer(b"Bearerabc"), None);
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bear"), None);
    }

    #[test]
    fn token_compare_and_debug() {
        let t = Token::new(b"  s3cret\n").unwrap();
        assert!(t.matches(b"s3cret"));
        assert!(!t.matches(b"s3cre"));
        assert!(!t.matches(b"s3cret2"));
        assert!(!format!("{t:?}").contains("s3cret"));
        assert!(Token::new(b" \n").is_none());
    }

    fn cfg(file: Option<std::path::PathBuf>, env: Option<&str>) -> ControlConfig {
        ControlConfig {
            token_file: file,
            token_env: env.map(str::to_string),
            ..ControlConfig::default()
        }
    }

    #[test]
    fn token_load_from_file_and_env_with_clear_errors() {
        let dir = std::env::temp_dir().join(format!("sy-ctl-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("token");
        std::fs::write(&f, "tok-123\n").unwrap();
        let t = Token::load(&cfg(Some(f.clone()), None)).unwrap().unwrap();
        assert!(t.matches(b"tok-123"));
        std::fs::write(&f, "\n").unwrap();
        let e = Token::load(&cfg(Some(f.clone()), None)).unwrap_err();
        assert!(e.contains("empty"), "{e}");
        let e = Token::load(&cfg(Some(dir.join("absent")), None)).unwrap_err();
        assert!(e.contains("absent"), "{e}");
        let e = Token::load(&cfg(None, Some("SY_CONTROL_TEST_SURELY_UNSET"))).unwrap_err();
        assert!(e.contains("SY_CONTROL_TEST_SURELY_UNSET is not set"), "{e}");
        // PATH is always set: its value becomes the token, and is never in an error.
        let t = Token::load(&cfg(None, Some("PATH"))).unwrap().unwrap();
        let path = std::env::var("PATH").unwrap();
        assert!(t.matches(path.trim().as_bytes()));
        assert!(Token::load(&cfg(None, None)).unwrap().is_none());
        let _ = std::fs::remove_dir_all(dir);
    }
}
