//! EdDSA JWTs (RFC 7519, RFC 8037): compact serialisation, signed with the key set's
//! signing key, verified against any of its verification keys by `kid`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::{KeySet, TokenError};

/// Who issues the tokens and for whom.
#[derive(Debug, Clone)]
pub struct TokenConfig {
    /// `iss`.
    pub issuer: String,
    /// `aud`.
    pub audience: String,
    /// Access token lifetime (the contract: one hour).
    pub access_ttl_secs: i64,
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            issuer: "urn:identity".into(),
            audience: "member-api".into(),
            access_ttl_secs: 3600,
        }
    }
}

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub sid: String,
    pub jti: String,
}

impl AccessClaims {
    /// The member id in `sub`.
    pub fn member_id(&self) -> Option<i64> {
        self.sub.parse().ok()
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
    kid: Option<String>,
}

/// Issues and verifies access tokens.
#[derive(Clone)]
pub struct Tokens {
    keys: KeySet,
    config: TokenConfig,
    verified: Arc<RwLock<HashMap<Box<str>, Arc<AccessClaims>>>>,
}

/// Tokens whose signature was checked, kept so that a client's next requests skip the
/// signature check (the expiry is still checked every time; revocation is the
/// session's business, not the token's). Cleared whole when full.
const VERIFIED_CACHE_ENTRIES: usize = 20_000;

impl Tokens {
    pub fn new(keys: KeySet, config: TokenConfig) -> Self {
        Self {
            keys,
            config,
            verified: Arc::new(RwLock::new(HashMap::new())),
        }
    }

    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    pub fn config(&self) -> &TokenConfig {
        &self.config
    }

    /// A signed access token for a member's session, valid from `now_secs` for the
    /// configured lifetime.
    pub fn issue(&self, member_id: i64, session_id: &str, jti: &str, now_secs: i64) -> String {
        let header = Header {
            alg: "EdDSA".into(),
            typ: Some("JWT".into()),
            kid: Some(self.keys.signing_kid.clone()),
        };
        let claims = AccessClaims {
            iss: self.config.issuer.clone(),
            sub: member_id.to_string(),
            aud: self.config.audience.clone(),
            iat: now_secs,
            exp: now_secs + self.config.access_ttl_secs,
            sid: session_id.to_owned(),
            jti: jti.to_owned(),
        };
        let mut token = String::with_capacity(256);
        URL_SAFE_NO_PAD.encode_string(serde_json::to_vec(&header).unwrap_or_default(), &mut token);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(serde_json::to_vec(&claims).unwrap_or_default(), &mut token);
        let signature = self.keys.signing.sign(token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.to_bytes(), &mut token);
        token
    }

    /// Checks the signature, the issuer, the audience and the expiry (shared claims: a
    /// token verified before costs a look-up, no copy).
    pub fn verify(&self, token: &str, now_secs: i64) -> Result<Arc<AccessClaims>, TokenError> {
        let cached = self
            .verified
            .read()
            .ok()
            .and_then(|c| c.get(token).cloned());
        if let Some(claims) = cached {
            return if claims.exp <= now_secs {
                Err(TokenError::Expired)
            } else {
                Ok(claims)
            };
        }
        let claims = Arc::new(self.verify_uncached(token, now_secs)?);
        if let Ok(mut cache) = self.verified.write() {
            if cache.len() >= VERIFIED_CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(token.into(), Arc::clone(&claims));
        }
        Ok(claims)
    }

    fn verify_uncached(&self, token: &str, now_secs: i64) -> Result<AccessClaims, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Invalid("not a compact JWT"));
        };
        let header: Header = URL_SAFE_NO_PAD
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Invalid("bad header"))?;
        if header.alg != "EdDSA" {
            return Err(TokenError::Invalid("unexpected algorithm"));
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.verifying_key(kid))
            .ok_or(TokenError::Invalid("unknown key"))?;
        let sig_bytes: [u8; 64] = URL_SAFE_NO_PAD
            .decode(s)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(TokenError::Invalid("bad signature encoding"))?;
        let signed = &token[..h.len() + 1 + p.len()];
        key.verify_strict(signed.as_bytes(), &Signature::from_bytes(&sig_bytes))
            .map_err(|_| TokenError::Invalid("bad signature"))?;
        let claims: AccessClaims = URL_SAFE_NO_PAD
            .decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Invalid("bad claims"))?;
        if claims.iss != self.config.issuer || claims.aud != self.config.audience {
            return Err(TokenError::Invalid("wrong issuer or audience"));
        }
        if claims.exp <= now_secs {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens::new(KeySet::generate().unwrap(), TokenConfig::default())
    }

    #[test]
    fn issues_and_verifies() {
        let t = tokens();
        let jwt = t.issue(42, "sid-1", "jti-1", 1_000);
        let c = t.verify(&jwt, 1_001).unwrap();
        assert_eq!(c.member_id(), Some(42));
        assert_eq!(
            (c.sid.as_str(), c.jti.as_str(), c.exp),
            ("sid-1", "jti-1", 4_600)
        );
        assert!(matches!(t.verify(&jwt, 4_600), Err(TokenError::Expired)));
        // A cached token is still checked for expiry.
        assert!(t.verify(&jwt, 1_002).is_ok());
        assert!(matches!(t.verify(&jwt, 9_999), Err(TokenError::Expired)));
    }

    #[test]
    fn refuses_tampering_and_foreign_keys() {
        let t = tokens();
        let jwt = t.issue(42, "s", "j", 1_000);
        let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
        parts[1] = URL_SAFE_NO_PAD.encode(br#"{"iss":"urn:identity","sub":"1","aud":"member-api","iat":1000,"exp":9999,"sid":"s","jti":"j"}"#);
        assert!(t.verify(&parts.join("."), 1_001).is_err());
        assert!(tokens().verify(&jwt, 1_001).is_err());
        assert!(t.verify("a.b", 0).is_err());
        assert!(t.verify("WQBNCg7T1oV5rnGpT5cLb4pY", 0).is_err());
        let other_aud = Tokens::new(
            t.keys().clone(),
            TokenConfig {
                audience: "x".into(),
                ..TokenConfig::default()
            },
        );
        assert!(other_aud.verify(&jwt, 1_001).is_err());
    }
}
