//! The two digest formats: argon2id (PHC strings) and the legacy's bcrypt.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::{PasswordConfig, PasswordError};

/// What a stored digest is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestKind {
    Argon2id,
    /// `$2a$`, `$2b$` or `$2y$`: covers the first 72 bytes of the password.
    Bcrypt,
    /// Anything else, such as a withdrawn member's scrubbed digest: matches nothing.
    Unusable,
}

pub fn digest_kind(digest: &str) -> DigestKind {
    if digest.starts_with("$argon2id$") {
        DigestKind::Argon2id
    } else if (digest.starts_with("$2a$")
        || digest.starts_with("$2b$")
        || digest.starts_with("$2y$"))
        && digest.len() == 60
    {
        DigestKind::Bcrypt
    } else {
        DigestKind::Unusable
    }
}

pub struct Argon {
    hasher: Argon2<'static>,
    params: Params,
}

impl Argon {
    pub fn new(config: &PasswordConfig) -> Result<Self, PasswordError> {
        let params = Params::new(
            config.memory_kib,
            config.iterations,
            config.parallelism,
            None,
        )
        .map_err(|e| PasswordError::Internal(format!("argon2 parameters: {e}")))?;
        Ok(Self {
            hasher: Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone()),
            params,
        })
    }

    pub fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|e| PasswordError::Internal(format!("salt: {e}")))?;
        let salt = SaltString::encode_b64(&salt)
            .map_err(|e| PasswordError::Internal(format!("salt: {e}")))?;
        self.hasher
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| PasswordError::Internal(format!("argon2: {e}")))
    }

    pub fn verify(&self, password: &str, digest: &str) -> bool {
        PasswordHash::new(digest).is_ok_and(|parsed| {
            self.hasher
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    }

    /// Whether a digest was made with other parameters than the current ones.
    pub fn is_outdated(&self, digest: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(digest) else {
            return true;
        };
        let Ok(params) = Params::try_from(&parsed) else {
            return true;
        };
        params.m_cost() != self.params.m_cost()
            || params.t_cost() != self.params.t_cost()
            || params.p_cost() != self.params.p_cost()
    }
}

/// bcrypt reads at most 72 bytes; cutting them here keeps the library from refusing
/// longer passwords, with the same result as the legacy's.
fn bcrypt_input(password: &str) -> &[u8] {
    let bytes = password.as_bytes();
    &bytes[..bytes.len().min(72)]
}

pub fn bcrypt_verify(password: &str, digest: &str) -> bool {
    bcrypt::verify(bcrypt_input(password), digest).unwrap_or(false)
}

pub fn bcrypt_hash(password: &str, cost: u32) -> Result<String, PasswordError> {
    bcrypt::hash_with_result(bcrypt_input(password), cost)
        .map(|parts| parts.format_for_version(bcrypt::Version::TwoA))
        .map_err(|e| PasswordError::Internal(format!("bcrypt: {e}")))
}
