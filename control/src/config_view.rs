//! `GET /v1/config`: the effective configuration, every default filled in, as JSON (the same
//! keys as the TOML file), with secrets redacted.
//!
//! The config holds no secrets by design (only the *names* of the environment variables and
//! files that hold them: `token_env`, `api_key_env`, `token_file`, ...), and those names are
//! shown. Defensively, any other value under a key that looks like a secret (containing
//! `token`, `key`, `secret`, `password` or `credential`, and not ending in `_env` or `_file`)
//! is rendered as `"<redacted>"`, and so is the user-info part of any URL
//! (`https://user:pass@host` → `https://<redacted>@host`). A `tls` table holds only file
//! paths (`cert`, `key`): they are shown, the files' contents never are.
//!
//! `routes` is the file's table; the live one is `GET /v1/routes`.

use crate::ControlState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;

/// What replaces a secret.
pub const REDACTED: &str = "<redacted>";

/// The handler.
pub async fn handler(State(st): State<ControlState>) -> Response {
    match serde_json::to_value(st.config().as_ref()) {
        Ok(mut v) => {
            redact(&mut v);
            Json(v).into_response()
        }
        Err(e) => crate::errors(
            StatusCode::INTERNAL_SERVER_ERROR,
            vec![format!("rendering the configuration: {e}")],
        ),
    }
}

fn secret_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    if k.ends_with("_env") || k.ends_with("_file") {
        return false;
    }
    ["token", "key", "secret", "password", "passwd", "credential"]
        .iter()
        .any(|s| k.contains(s))
}

/// Redacts secrets in place (see the module docs).
pub fn redact(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                if k == "tls" && val.is_object() {
                    // `{cert, key}`: the paths of PEM files, never their contents.
                    continue;
                }
                if secret_key(k) && !val.is_null() {
                    *val = Value::String(REDACTED.into());
                } else {
                    redact(val);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact),
        Value::String(s) => {
            if let Some(r) = redact_userinfo(s) {
                *s = r;
            }
        }
        _ => {}
    }
}

/// `scheme://user:pass@host/...` → `scheme://<redacted>@host/...`.
fn redact_userinfo(s: &str) -> Option<String> {
    let (scheme, rest) = s.split_once("://")?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (_, host) = authority.rsplit_once('@')?;
    Some(format!("{scheme}://{REDACTED}@{host}{tail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_and_secret_names_are_not() {
        let mut v = serde_json::json!({
            "sinks": {"a": {
                "api_key_env": "DD_API_KEY",
                "token_env": "SFX",
                "api_key": "abc",
                "endpoint": "https://u:p@api.example.com:443/x?y",
                "password": null,
            }},
            "control": {"token_file": "/etc/t", "token": "xyz",
                        "tls": {"cert": "/etc/c.pem", "key": "/etc/k.pem"}},
            "list": [{"secret": 1}],
            "plain": "https://api.example.com/a@b",
        });
        redact(&mut v);
        assert_eq!(v["sinks"]["a"]["api_key_env"], "DD_API_KEY");
        assert_eq!(v["sinks"]["a"]["token_env"], "SFX");
        assert_eq!(v["sinks"]["a"]["api_key"], REDACTED);
        assert_eq!(
            v["sinks"]["a"]["endpoint"],
            "https://<redacted>@api.example.com:443/x?y"
        );
        assert!(v["sinks"]["a"]["password"].is_null());
        assert_eq!(v["control"]["token_file"], "/etc/t");
        assert_eq!(v["control"]["token"], REDACTED);
        assert_eq!(v["control"]["tls"]["key"], "/etc/k.pem");
        assert_eq!(v["list"][0]["secret"], REDACTED);
        assert_eq!(v["plain"], "https://api.example.com/a@b");
    }
}
