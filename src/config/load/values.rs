//! Value readers that several tables share: URLs, headers, readable files,
//! Kubernetes names. Each reports its problem located at the value, like the
//! primitive readers of [`Ctx`].

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::reader::{Ctx, Sensitivity, Table, Value, io_reason};
use crate::config::secret::Secret;

/// The shortest `interval`; also the shortest `rollout_timeout` and command
/// target `timeout`.
pub(super) const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// Whether `s` is an http(s) URL with a host; a password in it is kept as a
/// secret, encoded and decoded.
pub(super) fn http_url(cx: &mut Ctx<'_>, key: &str, s: &str, span: &Range<usize>) -> bool {
    match reqwest::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            if let Some(p) = u.password() {
                // The URL keeps it percent-encoded; requests send it decoded.
                cx.register_secret(p, span);
                if let Ok(decoded) = percent_encoding::percent_decode_str(p).decode_utf8() {
                    cx.register_secret(&decoded, span);
                }
            }
            true
        }
        // The value may hold a token: say what is wrong, never echo it. Only
        // a well-known scheme is named; anything else may be part of a secret
        // (`token:x` parses as scheme "token").
        Ok(u) if KNOWN_SCHEMES.contains(&u.scheme()) => {
            cx.error(
                span,
                format!(
                    "\"{key}\" must be an http:// or https:// URL, not {}://",
                    u.scheme()
                ),
            );
            false
        }
        _ => {
            cx.error_hint(
                span,
                format!("\"{key}\" is not an http:// or https:// URL"),
                Some("write the scheme, like \"http://host:port/path\"".into()),
            );
            false
        }
    }
}

/// Schemes that are safe to name in an error message.
const KNOWN_SCHEMES: &[&str] = &[
    "ftp", "ftps", "file", "tcp", "udp", "unix", "ws", "wss", "grpc", "smtp", "smtps", "mailto",
    "ssh", "git", "redis", "postgres", "mysql", "amqp", "ldap", "s3",
];

/// HTTP headers; every value is treated as a secret (they carry tokens).
pub(super) fn read_headers(cx: &mut Ctx<'_>, v: &Value<'_>) -> Option<BTreeMap<String, Secret>> {
    let map = cx.string_map("headers", v, Sensitivity::Secret)?;
    let key_span = |name: &str| {
        v.get_ref()
            .as_table()
            .and_then(|t| t.iter().find(|(k, _)| k.get_ref() == name))
            .map_or(v.span(), |(k, _)| k.span())
    };
    let mut ok = true;
    for (k, val) in &map {
        if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
            cx.error(
                &key_span(k),
                format!("\"headers\": \"{k}\" is not a valid header name"),
            );
            ok = false;
        } else if reqwest::header::HeaderValue::from_str(val).is_err() {
            cx.error(
                &key_span(k),
                format!("\"headers\": the value of \"{k}\" is not a valid header value"),
            );
            ok = false;
        }
    }
    ok.then(|| map.into_iter().map(|(k, v)| (k, Secret::new(v))).collect())
}

/// A path that can be opened now, so that a missing CA bundle is a
/// configuration error rather than a failure at the first request.
pub(super) fn readable_file(cx: &mut Ctx<'_>, key: &str, v: &Value<'_>) -> Option<PathBuf> {
    let p = cx.path(key, v)?;
    match std::fs::File::open(&p) {
        Ok(_) => Some(p),
        Err(e) => {
            cx.error(
                &v.span(),
                format!("\"{key}\": cannot read {}: {}", p.display(), io_reason(&e)),
            );
            None
        }
    }
}

/// An optional key: `Ok(None)` when absent, `Err(())` when present and
/// invalid (already reported), so that the caller can tell the two apart.
pub(super) fn optional<T>(
    t: &mut Table<'_, '_>,
    key: &'static str,
    read: impl FnOnce(&Value<'_>) -> Option<T>,
) -> Result<Option<T>, ()> {
    match t.get(key) {
        Some(v) => read(v).map(Some).ok_or(()),
        None => Ok(None),
    }
}

/// A Kubernetes object name: a DNS label (`max` 63) or, with `max` above 63,
/// a DNS subdomain that may contain dots.
pub(super) fn dns_name(cx: &mut Ctx<'_>, key: &str, v: &Value<'_>, max: usize) -> Option<String> {
    let s = cx.nonempty_string(key, v)?;
    let ok = s.len() <= max
        && s.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (max > 63 && c == '.')
        })
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !ok {
        cx.error(&v.span(), format!("\"{key}\": \"{s}\" is not a valid Kubernetes name (lowercase letters, digits and '-', at most {max} characters)"));
        return None;
    }
    Some(s)
}
