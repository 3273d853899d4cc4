//! Signing and verification keys: one Ed25519 signing key and any number of
//! verification keys (previous signing keys during a rotation), loaded from PEM files,
//! or a development key made once and kept in the data directory.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::TokenError;

/// Where the signing key comes from.
#[derive(Debug, Clone)]
pub enum SigningKeyFile {
    /// A PKCS#8 PEM file (`openssl genpkey -algorithm ed25519`).
    Path(PathBuf),
    /// Made on first start and kept under the data directory (development only).
    DevelopmentIn(PathBuf),
}

/// The keys in force.
#[derive(Clone)]
pub struct KeySet {
    pub(crate) signing_kid: String,
    pub(crate) signing: SigningKey,
    pub(crate) verifying: Vec<(String, VerifyingKey)>,
}

fn key_error(path: &Path, reason: impl ToString) -> TokenError {
    TokenError::KeyFile {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// RFC 7638 thumbprint of an Ed25519 public key: its `kid`.
fn thumbprint(key: &VerifyingKey) -> String {
    let x = URL_SAFE_NO_PAD.encode(key.as_bytes());
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

fn read_private(path: &Path) -> Result<SigningKey, TokenError> {
    let pem = std::fs::read_to_string(path).map_err(|e| key_error(path, e))?;
    SigningKey::from_pkcs8_pem(&pem)
        .map_err(|_| key_error(path, "not a PKCS#8 PEM Ed25519 private key"))
}

fn read_public(path: &Path) -> Result<VerifyingKey, TokenError> {
    let pem = std::fs::read_to_string(path).map_err(|e| key_error(path, e))?;
    if let Ok(key) = VerifyingKey::from_public_key_pem(&pem) {
        return Ok(key);
    }
    SigningKey::from_pkcs8_pem(&pem)
        .map(|k| k.verifying_key())
        .map_err(|_| key_error(path, "not a PEM Ed25519 public or private key"))
}

impl KeySet {
    /// Loads the signing key and the extra verification keys (public or private PEMs).
    pub fn load(signing: &SigningKeyFile, verification: &[PathBuf]) -> Result<Self, TokenError> {
        let signing = match signing {
            SigningKeyFile::Path(p) => read_private(p)?,
            SigningKeyFile::DevelopmentIn(dir) => Self::development_key(dir)?,
        };
        let mut set = Self::from_signing_key(signing);
        for path in verification {
            let key = read_public(path)?;
            let kid = thumbprint(&key);
            if !set.verifying.iter().any(|(k, _)| *k == kid) {
                set.verifying.push((kid, key));
            }
        }
        Ok(set)
    }

    /// A key set of one signing key.
    pub fn from_signing_key(signing: SigningKey) -> Self {
        let public = signing.verifying_key();
        let kid = thumbprint(&public);
        Self {
            signing_kid: kid.clone(),
            signing,
            verifying: vec![(kid, public)],
        }
    }

    /// A fresh random key set (tests).
    pub fn generate() -> Result<Self, TokenError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| TokenError::Random(e.to_string()))?;
        Ok(Self::from_signing_key(SigningKey::from_bytes(&seed)))
    }

    fn development_key(dir: &Path) -> Result<SigningKey, TokenError> {
        let path = dir.join("jwt-signing-key.pem");
        if path.exists() {
            return read_private(&path);
        }
        std::fs::create_dir_all(dir).map_err(|e| key_error(dir, e))?;
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| TokenError::Random(e.to_string()))?;
        let key = SigningKey::from_bytes(&seed);
        let pem = key
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .map_err(|e| key_error(&path, e))?;
        write_private_file(&path, pem.as_bytes()).map_err(|e| key_error(&path, e))?;
        Ok(key)
    }

    /// The key id of the signing key.
    pub fn signing_kid(&self) -> &str {
        &self.signing_kid
    }

    /// The JSON Web Key Set of every verification key.
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self
            .verifying
            .iter()
            .map(|(kid, key)| {
                json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": URL_SAFE_NO_PAD.encode(key.as_bytes()),
                    "kid": kid,
                    "alg": "EdDSA",
                    "use": "sig",
                })
            })
            .collect();
        json!({ "keys": keys })
    }

    pub(crate) fn verifying_key(&self, kid: &str) -> Option<&VerifyingKey> {
        self.verifying
            .iter()
            .find(|(k, _)| k == kid)
            .map(|(_, v)| v)
    }
}

#[cfg(unix)]
fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn development_key_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = KeySet::load(&SigningKeyFile::DevelopmentIn(dir.path().into()), &[]).unwrap();
        let b = KeySet::load(&SigningKeyFile::DevelopmentIn(dir.path().into()), &[]).unwrap();
        assert_eq!(a.signing_kid(), b.signing_kid());
        assert_eq!(a.jwks()["keys"][0]["kid"], a.signing_kid());
    }

    #[test]
    fn rotation_keeps_old_keys_for_verification() {
        let dir = tempfile::tempdir().unwrap();
        let old = KeySet::load(&SigningKeyFile::DevelopmentIn(dir.path().into()), &[]).unwrap();
        let old_file = dir.path().join("jwt-signing-key.pem");
        let new_dir = tempfile::tempdir().unwrap();
        let new_file = {
            KeySet::load(&SigningKeyFile::DevelopmentIn(new_dir.path().into()), &[]).unwrap();
            new_dir.path().join("jwt-signing-key.pem")
        };
        let set = KeySet::load(&SigningKeyFile::Path(new_file), &[old_file]).unwrap();
        assert_ne!(set.signing_kid(), old.signing_kid());
        assert!(set.verifying_key(old.signing_kid()).is_some());
        assert_eq!(set.jwks()["keys"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn a_bad_key_file_is_named_without_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.pem");
        std::fs::write(&path, "SECRET-NOT-A-KEY").unwrap();
        let err = KeySet::load(&SigningKeyFile::Path(path), &[])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("bad.pem"));
        assert!(!err.contains("SECRET"));
    }
}
