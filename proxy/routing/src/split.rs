//! The sticky, monotonic split. Each request's key (by default the `sub` of a bearer
//! JWT, else the bearer token itself, else the client address) is hashed to one of
//! 10 000 buckets ([`crate::hash`]); the new side takes the buckets below its share in
//! basis points. So every replica decides alike without shared state, a user stays on
//! one side while the weight stays, and raising the weight only moves users from legacy
//! to new, never back.
//!
//! The JWT is read without checking its signature: this decides routing, not access,
//! and both sides check the token themselves. A forged `sub` can only choose a side.

use std::net::IpAddr;

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use http::{HeaderMap, HeaderName};
use serde::Deserialize;

use crate::hash::Bucket;

/// The two sides of the migration: the one type the comparison and the guard use too.
pub use shadow_compare::Side;

/// Whether a key in `bucket` goes to the new side when the new side's share is
/// `new_basis_points` (0 to 10 000): the new side takes the lowest buckets.
pub fn goes_to_new(bucket: Bucket, new_basis_points: u32) -> bool {
    bucket.value() < new_basis_points
}

/// The side of a key in `bucket` at share `new_basis_points`.
pub fn side_of(bucket: Bucket, new_basis_points: u32) -> Side {
    if goes_to_new(bucket, new_basis_points) {
        Side::New
    } else {
        Side::Legacy
    }
}

/// What identifies a user, as the proxy config's `sticky_key` says: `jwt_sub`,
/// `{header: NAME}` or `{cookie: NAME}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "serde_yaml::Value")]
pub enum StickyKeySource {
    /// The `sub` of a bearer JWT, else the bearer token, else the client address.
    #[default]
    JwtSub,
    /// A request header's value, else the default chain.
    Header(HeaderName),
    /// A cookie's value, else the default chain.
    Cookie(String),
}

impl TryFrom<serde_yaml::Value> for StickyKeySource {
    type Error = String;

    fn try_from(value: serde_yaml::Value) -> Result<Self, Self::Error> {
        const EXPECTED: &str = "expected `jwt_sub`, `{header: NAME}` or `{cookie: NAME}`";
        if value.as_str() == Some("jwt_sub") {
            return Ok(StickyKeySource::JwtSub);
        }
        let entry = value
            .as_mapping()
            .filter(|map| map.len() == 1)
            .and_then(|map| map.iter().next())
            .and_then(|(kind, name)| Some((kind.as_str()?, name.as_str()?)));
        match entry {
            Some(("header", name)) => HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                .map(StickyKeySource::Header)
                .map_err(|_| format!("{name:?} is not a header name")),
            Some(("cookie", name)) => {
                let token = |b: u8| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b);
                if name.is_empty() || !name.bytes().all(token) {
                    return Err(format!("{name:?} is not a cookie name"));
                }
                Ok(StickyKeySource::Cookie(name.to_owned()))
            }
            _ => Err(EXPECTED.to_owned()),
        }
    }
}

/// Where a request's key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// The `sub` claim of a bearer JWT.
    JwtSubject,
    /// The bearer token itself (not a JWT, or one without `sub`).
    BearerToken,
    /// The configured header.
    Header,
    /// The configured cookie.
    Cookie,
    /// The client's IP address, as text.
    ClientAddress,
}

/// A request's key, kept only as its bucket: the token or subject it came from is not
/// held, so it cannot leak into a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StickyKey {
    kind: KeyKind,
    bucket: Bucket,
}

impl StickyKey {
    /// The key of a request with `headers` from `client` under `source`.
    pub fn from_request(
        source: &StickyKeySource,
        headers: &HeaderMap,
        client: IpAddr,
    ) -> StickyKey {
        let configured = match source {
            StickyKeySource::JwtSub => None,
            StickyKeySource::Header(name) => headers
                .get(name)
                .map(|value| value.as_bytes())
                .filter(|value| !value.is_empty())
                .map(|value| StickyKey::of(KeyKind::Header, value)),
            StickyKeySource::Cookie(name) => {
                cookie(headers, name).map(|value| StickyKey::of(KeyKind::Cookie, value.as_bytes()))
            }
        };
        configured.unwrap_or_else(|| default_chain(headers, client))
    }

    /// The key of an identifier's bytes.
    pub fn of(kind: KeyKind, value: &[u8]) -> StickyKey {
        StickyKey {
            kind,
            bucket: Bucket::of(value),
        }
    }

    /// Where the key came from.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// Its bucket.
    pub fn bucket(&self) -> Bucket {
        self.bucket
    }

    /// Its side at share `new_basis_points`.
    pub fn side(&self, new_basis_points: u32) -> Side {
        side_of(self.bucket, new_basis_points)
    }
}

fn default_chain(headers: &HeaderMap, client: IpAddr) -> StickyKey {
    let authorization = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    // Read as the legacy API reads it, so that the key is the token both sides see.
    match member_contract::auth::bearer_token(authorization).filter(|token| !token.is_empty()) {
        Some(token) => match jwt_subject(&token) {
            Some(subject) => StickyKey::of(KeyKind::JwtSubject, subject.as_bytes()),
            None => StickyKey::of(KeyKind::BearerToken, token.as_bytes()),
        },
        // IPv4-mapped IPv6 (a dual-stack listener) as plain IPv4, so both listeners agree.
        None => StickyKey::of(
            KeyKind::ClientAddress,
            client.to_canonical().to_string().as_bytes(),
        ),
    }
}

/// Longest token whose payload is decoded; longer ones are keyed as opaque tokens.
const MAX_JWT_LEN: usize = 8 * 1024;

/// base64url with or without padding, as JWTs are written (RFC 7515 says without).
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The `sub` claim of a compact JWS (`header.payload.signature`), unverified; `None`
/// for anything else, a payload that is not a JSON object, or a `sub` that is not a
/// non-empty string.
pub fn jwt_subject(token: &str) -> Option<String> {
    if token.len() > MAX_JWT_LEN {
        return None;
    }
    let mut parts = token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None; // five parts: an encrypted JWT, whose payload is not readable
    }
    let payload = BASE64URL.decode(payload).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&payload).ok()?;
    match claims.as_object()?.get("sub")?.as_str()? {
        "" => None,
        subject => Some(subject.to_owned()),
    }
}

/// The first non-empty value of cookie `name` in the request's `Cookie` headers.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(key, _)| *key == name)
        .map(|(_, value)| unquote(value))
        .find(|value| !value.is_empty())
}

/// A cookie value without its optional double quotes (RFC 6265).
fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
        .unwrap_or(value)
}

#[cfg(test)]
mod tests;
