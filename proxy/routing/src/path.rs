//! Path normalisation before routing, as Istio's mesh-wide `pathNormalization` does it
//! for its sidecars: the proxy matches, and forwards, the path the upstream will route,
//! so that no spelling of a member action (`//api/v1/users`, `/api/v1/./users`,
//! `/api/v1/%75sers`) escapes the rule written for it.
//!
//! The modes are Istio's:
//! - `none`: the path as received.
//! - `base`: RFC 3986 normalisation as Envoy's `normalize_path` does it: percent-encoded
//!   unreserved characters decoded (`%75` is `u`), the hex digits of the other escapes
//!   in upper case, backslashes read as slashes, dot segments removed (`%2E` included).
//! - `merge_slashes` (the default): `base`, then runs of slashes merged into one, as
//!   Rails' router squeezes them.
//! - `decode_and_merge_slashes`: also decodes `%2F` and `%5C` into slashes first.
//!
//! Malformed escapes (`%zz`, a lone `%`) are kept as they are, as Chromium's
//! canonicaliser (Envoy's) keeps them: the upstream answers them, not the proxy.
//!
//! ```
//! use proxy_routing::path::{PathNormalization, normalize};
//!
//! let mode = PathNormalization::MergeSlashes;
//! assert_eq!(normalize("//api/v1//users", mode), "/api/v1/users");
//! assert_eq!(normalize("/api/v1/%75sers/./me/../me", mode), "/api/v1/users/me");
//! assert_eq!(normalize("/api/v1/users/../../../x", mode), "/x");
//! assert_eq!(normalize("/api/v1/users%2fme", mode), "/api/v1/users%2Fme");
//! ```

use std::borrow::Cow;

use serde::Deserialize;

/// How the request path is normalised before routing (Istio's `pathNormalization`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathNormalization {
    /// The path as received.
    None,
    /// RFC 3986 normalisation and backslashes read as slashes.
    Base,
    /// `base`, and runs of slashes merged.
    #[default]
    MergeSlashes,
    /// `%2F` and `%5C` decoded into slashes, then `merge_slashes`.
    DecodeAndMergeSlashes,
}

/// Whether `b` is an unreserved character of RFC 3986 (decoded when escaped).
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Whether normalising `path` in `mode` could change it (most paths: no).
fn needs_work(path: &str, mode: PathNormalization) -> bool {
    let bytes = path.as_bytes();
    if !bytes.starts_with(b"/") {
        return true;
    }
    let merge = matches!(
        mode,
        PathNormalization::MergeSlashes | PathNormalization::DecodeAndMergeSlashes
    );
    bytes.iter().enumerate().any(|(i, &b)| match b {
        b'%' | b'\\' => true,
        b'.' => {
            // A segment of `.` or `..`.
            let start = i == 0 || bytes[i - 1] == b'/';
            let rest = &bytes[i + 1..];
            let dots = rest.is_empty()
                || rest[0] == b'/'
                || (rest[0] == b'.' && (rest.len() == 1 || rest[1] == b'/'));
            start && dots
        }
        b'/' => merge && bytes.get(i + 1) == Some(&b'/'),
        _ => false,
    })
}

/// The path (no query) as the upstream will route it after normalisation in `mode`.
pub fn normalize(path: &str, mode: PathNormalization) -> Cow<'_, str> {
    if mode == PathNormalization::None || !needs_work(path, mode) {
        return Cow::Borrowed(path);
    }
    let decode_slashes = mode == PathNormalization::DecodeAndMergeSlashes;
    // 1. Escapes: unreserved characters decoded, the rest upper-cased; backslashes (and,
    //    when asked, escaped slashes) become slashes.
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len() + 1);
    if !bytes.starts_with(b"/") {
        decoded.push(b'/');
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            let value = hi * 16 + lo;
            if unreserved(value) {
                decoded.push(value);
            } else if decode_slashes && (value == b'/' || value == b'\\') {
                decoded.push(b'/');
            } else {
                decoded.push(b'%');
                decoded.extend_from_slice(format!("{value:02X}").as_bytes());
            }
            i += 3;
            continue;
        }
        decoded.push(if b == b'\\' { b'/' } else { b });
        i += 1;
    }
    // 2. Dot segments (RFC 3986 §5.2.4), and, when asked, empty segments merged.
    let merge = matches!(
        mode,
        PathNormalization::MergeSlashes | PathNormalization::DecodeAndMergeSlashes
    );
    let mut segments: Vec<&[u8]> = Vec::new();
    let parts: Vec<&[u8]> = decoded[1..].split(|&b| b == b'/').collect();
    let last = parts.len() - 1;
    for (index, segment) in parts.iter().enumerate() {
        match *segment {
            b"." | b".." => {
                if *segment == b".." {
                    segments.pop();
                }
                // `/a/b/..` is `/a/`: a trailing dot segment leaves the slash.
                if index == last {
                    segments.push(b"");
                }
            }
            b"" if merge && index != last => {}
            other => segments.push(other),
        }
    }
    let mut out = Vec::with_capacity(decoded.len());
    for segment in &segments {
        out.push(b'/');
        out.extend_from_slice(segment);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    // Decoding produced only ASCII from ASCII escapes; the rest was UTF-8 already.
    Cow::Owned(
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use PathNormalization::*;

    #[test]
    fn each_mode_does_what_istio_says() {
        let cases: &[(&str, PathNormalization, &str)] = &[
            ("/api/v1/users", MergeSlashes, "/api/v1/users"),
            ("//api/v1/users", None, "//api/v1/users"),
            ("//api/v1/users", Base, "//api/v1/users"),
            ("//api/v1/users", MergeSlashes, "/api/v1/users"),
            ("/api/v1//users/", MergeSlashes, "/api/v1/users/"),
            ("///", MergeSlashes, "/"),
            ("/api/v1/users/me/.", MergeSlashes, "/api/v1/users/me/"),
            ("/api/v1/users/me/..", Base, "/api/v1/users/"),
            ("/api/v1/./users/x/../me", Base, "/api/v1/users/me"),
            ("/../../api/v1/users", Base, "/api/v1/users"),
            ("/api/v1/%2e%2E/v1/users", Base, "/api/v1/users"),
            ("/api/v1/%75%73ers", Base, "/api/v1/users"),
            ("/api/v1/users%2fme", Base, "/api/v1/users%2Fme"),
            (
                "/api/v1/users%2fme",
                DecodeAndMergeSlashes,
                "/api/v1/users/me",
            ),
            (
                "/api/v1/users%5c%5Cme",
                DecodeAndMergeSlashes,
                "/api/v1/users/me",
            ),
            ("/api\\v1\\users", Base, "/api/v1/users"),
            ("/api/v1/users/%zz", MergeSlashes, "/api/v1/users/%zz"),
            ("/api/v1/users/%", MergeSlashes, "/api/v1/users/%"),
            ("/api/v1/users/%4", MergeSlashes, "/api/v1/users/%4"),
            ("/api/v1/users/%c3%a9", MergeSlashes, "/api/v1/users/%C3%A9"),
            ("/api/v1/users/..me", MergeSlashes, "/api/v1/users/..me"),
            ("/api/v1/users/.json", MergeSlashes, "/api/v1/users/.json"),
            ("api/v1/users", Base, "/api/v1/users"),
            ("", MergeSlashes, "/"),
        ];
        for (path, mode, expected) in cases {
            assert_eq!(normalize(path, *mode), *expected, "{path:?} in {mode:?}");
        }
    }

    #[test]
    fn a_normalised_path_is_a_fixed_point() {
        for path in [
            "//a//b/../c/%2e/",
            "/a/%2F/b",
            "/%7e/x//",
            "/a/b/c/../../..",
        ] {
            for mode in [Base, MergeSlashes, DecodeAndMergeSlashes] {
                let once = normalize(path, mode).into_owned();
                assert_eq!(normalize(&once, mode), once, "{path:?} in {mode:?}");
            }
        }
    }

    #[test]
    fn plain_paths_are_not_copied() {
        assert!(matches!(
            normalize("/api/v1/users/me", MergeSlashes),
            Cow::Borrowed(_)
        ));
        assert!(matches!(
            normalize("/api/v1/users/me.json", MergeSlashes),
            Cow::Borrowed(_)
        ));
    }
}
