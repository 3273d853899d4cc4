//! Values of the proxy config with a parsing constructor: an upstream's address and
//! side, and the admin token, which is never printed.

use std::fmt;
use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::split::Side;

/// Where a destination host of the VirtualService is reached, and which side it is.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// `host:port` to connect to (`127.0.0.1:3000`, `legacy-api:3000`, `[::1]:8080`).
    pub address: UpstreamAddress,
    /// `legacy` for the Rails API, `new` for the identity service.
    pub role: Side,
}

/// A `host:port` pair, checked but not resolved: the proxy resolves names when it
/// connects, so that a DNS change needs no reload.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct UpstreamAddress {
    host: String,
    port: u16,
    /// The same as a URI authority, built once for every request sent there.
    authority: http::uri::Authority,
}

/// An address that is not `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid upstream address {input:?}: {reason}")]
pub struct AddressError {
    input: String,
    reason: &'static str,
}

impl UpstreamAddress {
    /// The host name or IP address (without brackets for IPv6).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port` (brackets around an IPv6 address) as a URI authority.
    pub fn authority(&self) -> &http::uri::Authority {
        &self.authority
    }
}

impl FromStr for UpstreamAddress {
    type Err = AddressError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |reason| AddressError {
            input: input.to_owned(),
            reason,
        };
        let (host, port) = input
            .rsplit_once(':')
            .ok_or_else(|| fail("expected host:port"))?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| fail("the port must be a number from 1 to 65535"))?;
        let host = match host.strip_prefix('[') {
            Some(bracketed) => {
                let inner = bracketed
                    .strip_suffix(']')
                    .ok_or_else(|| fail("unclosed '['"))?;
                inner
                    .parse::<std::net::Ipv6Addr>()
                    .map_err(|_| fail("invalid IPv6 address"))?;
                inner
            }
            None => {
                let name_like = host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
                if host.is_empty() || !name_like {
                    return Err(fail("the host must be a name or an IP address"));
                }
                host
            }
        };
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let authority = http::uri::Authority::from_maybe_shared(authority)
            .map_err(|_| fail("the host must be a name or an IP address"))?;
        Ok(UpstreamAddress {
            host: host.to_owned(),
            port,
            authority,
        })
    }
}

impl TryFrom<String> for UpstreamAddress {
    type Error = AddressError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl fmt::Display for UpstreamAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.authority.as_str())
    }
}

/// The admin API's bearer token. Its `Debug` shows no part of it, and checking a
/// presented token takes the same time wherever the first difference is.
#[derive(Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct AdminToken(SecretString);

/// The shortest admin token accepted.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// An admin token too short to be a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be at least {MIN_ADMIN_TOKEN_LEN} characters long")]
pub struct TokenTooShort;

impl AdminToken {
    /// A token from its text, refused if shorter than [`MIN_ADMIN_TOKEN_LEN`].
    pub fn new(token: String) -> Result<Self, TokenTooShort> {
        if token.chars().count() < MIN_ADMIN_TOKEN_LEN {
            return Err(TokenTooShort);
        }
        Ok(AdminToken(SecretString::from(token)))
    }

    /// Whether `presented` is this token, compared in time independent of where the
    /// two first differ (the length is not hidden).
    pub fn verify(&self, presented: &str) -> bool {
        let expected = self.0.expose_secret().as_bytes();
        let presented = presented.as_bytes();
        if expected.len() != presented.len() {
            return false;
        }
        expected
            .iter()
            .zip(presented)
            .fold(0u8, |difference, (a, b)| difference | (a ^ b))
            == 0
    }

    /// The token itself, for the one place that must send it.
    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

impl TryFrom<String> for AdminToken {
    type Error = TokenTooShort;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        AdminToken::new(value)
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken([redacted])")
    }
}
