//! The one authenticated-encryption construction of the crate: XChaCha20-Poly1305 with a
//! random 24-byte nonce, laid out as `nonce || ciphertext || tag`. Used both to wrap the data
//! key under a passphrase-derived key and to seal secrets under the data key.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use zeroize::Zeroizing;

use crate::VaultError;

/// Nonce length of XChaCha20-Poly1305.
pub(crate) const NONCE_LEN: usize = 24;
/// Poly1305 tag length.
pub(crate) const TAG_LEN: usize = 16;

/// Fills `buf` from the operating system's random number generator.
pub(crate) fn fill_random(buf: &mut [u8]) -> Result<(), VaultError> {
    rand::rngs::OsRng
        .try_fill_bytes(buf)
        .map_err(|e| VaultError::Random(e.to_string()))
}

fn cipher(key: &[u8; 32]) -> Result<XChaCha20Poly1305, VaultError> {
    // The cipher wipes its copy of the key on drop.
    XChaCha20Poly1305::new_from_slice(key).map_err(|_| VaultError::Crypto("invalid key length"))
}

/// Encrypts `msg` under `key`, authenticating `aad`; returns `nonce || ciphertext || tag`.
pub fn seal(key: &[u8; 32], msg: &[u8], aad: &[u8]) -> Result<Vec<u8>, VaultError> {
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce)?;
    let ct = cipher(key)?
        .encrypt(&XNonce::from(nonce), Payload { msg, aad })
        .map_err(|_| VaultError::Crypto("the value is too large to encrypt"))?;
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Decrypts `nonce || ciphertext || tag`; `None` when it is too short or fails authentication.
pub fn open(key: &[u8; 32], sealed: &[u8], aad: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return None;
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
    cipher(key)
        .ok()?
        .decrypt(&XNonce::from(nonce), Payload { msg: ct, aad })
        .ok()
        .map(Zeroizing::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let key = [7u8; 32];
        let sealed = seal(&key, b"hello", b"aad").unwrap();
        assert_eq!(sealed.len(), NONCE_LEN + 5 + TAG_LEN);
        assert_eq!(open(&key, &sealed, b"aad").unwrap().as_slice(), b"hello");
        assert!(open(&key, &sealed, b"other").is_none());
        assert!(open(&[8u8; 32], &sealed, b"aad").is_none());
        assert!(open(&key, &sealed[..NONCE_LEN + TAG_LEN - 1], b"aad").is_none());
        // Fresh nonce every time.
        assert_ne!(seal(&key, b"hello", b"aad").unwrap(), sealed);
    }
}
