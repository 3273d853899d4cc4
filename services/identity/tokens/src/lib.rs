//! Tokens: access tokens are EdDSA (Ed25519) JWTs that any service can verify from the
//! JWKS; refresh tokens and session ids are opaque random strings, refresh tokens stored
//! only as hashes.

mod jwt;
mod keys;

pub use jwt::{AccessClaims, TokenConfig, Tokens};
pub use keys::{KeySet, SigningKeyFile};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// Why a token or a key was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token is not a valid, current access token (the reason is for logs only).
    #[error("invalid token: {0}")]
    Invalid(&'static str),
    #[error("expired token")]
    Expired,
    /// A key file that cannot be read or parsed; names the file, never its content.
    #[error("key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error("no randomness available: {0}")]
    Random(String),
}

/// `n` random bytes, base64url without padding (32 bytes = 256 bits → 43 characters).
pub fn random_token(n: usize) -> Result<String, TokenError> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).map_err(|e| TokenError::Random(e.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(buf))
}

/// How a refresh token is stored: SHA-256, hex. The token has 256 random bits, so a
/// fast hash is enough (no dictionary to attack).
pub fn hash_refresh_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_tokens_are_long_and_distinct() {
        let a = random_token(32).unwrap();
        let b = random_token(32).unwrap();
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert_eq!(hash_refresh_token(&a).len(), 64);
        assert_ne!(hash_refresh_token(&a), hash_refresh_token(&b));
    }
}
