//! Independent verification of finished signatures against a wallet's public key, with
//! implementations that share no code with the signing protocols (k256, ed25519-dalek).

use concord_types::Scheme;
use k256::ecdsa::signature::hazmat::PrehashVerifier;

use crate::WireError;

fn bad(scheme: Scheme, why: &str) -> WireError {
    WireError::InvalidSignature(format!("{scheme} signature rejected: {why}"))
}

/// Verifies `signature` over `signing_input` under `public_key`:
/// - ECDSA: 33-byte SEC1 key, 32-byte digest, 65-byte `r || s || recovery id`; `s` must be
///   low and the recovery id must recover the key (as a chain would);
/// - Taproot: 32-byte x-only key, BIP-340 over the message;
/// - Ed25519: 32-byte key, RFC 8032 strict verification;
/// - ECDSA P-256 (ES256): SEC1 key (compressed or not), 32-byte digest (SHA-256 of the JWS
///   signing input), 64-byte `r || s` with low `s`.
pub fn verify_signature(
    scheme: Scheme,
    public_key: &[u8],
    signing_input: &[u8],
    signature: &[u8],
) -> Result<(), WireError> {
    match scheme {
        Scheme::EcdsaSecp256k1 => {
            let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(public_key)
                .map_err(|_| bad(scheme, "the public key is not a secp256k1 point"))?;
            if signing_input.len() != 32 || signature.len() != 65 {
                return Err(bad(
                    scheme,
                    "expected a 32-byte digest and a 65-byte signature",
                ));
            }
            let sig = k256::ecdsa::Signature::from_slice(&signature[..64])
                .map_err(|_| bad(scheme, "malformed (r, s)"))?;
            if sig.normalize_s().is_some() {
                return Err(bad(scheme, "s is not low"));
            }
            vk.verify_prehash(signing_input, &sig)
                .map_err(|_| bad(scheme, "does not verify"))?;
            let rid = k256::ecdsa::RecoveryId::from_byte(signature[64])
                .ok_or_else(|| bad(scheme, "bad recovery id"))?;
            let recovered =
                k256::ecdsa::VerifyingKey::recover_from_prehash(signing_input, &sig, rid)
                    .map_err(|_| bad(scheme, "recovery failed"))?;
            if recovered != vk {
                return Err(bad(scheme, "the recovery id recovers another key"));
            }
            Ok(())
        }
        Scheme::SchnorrTaproot => {
            // k256 panics on slices of other lengths (it indexes before it checks): check first.
            if public_key.len() != 32 || signature.len() != 64 {
                return Err(bad(
                    scheme,
                    "expected a 32-byte x-only key and a 64-byte signature",
                ));
            }
            let vk = k256::schnorr::VerifyingKey::from_bytes(public_key)
                .map_err(|_| bad(scheme, "the public key is not an x-only secp256k1 key"))?;
            let sig = k256::schnorr::Signature::try_from(signature)
                .map_err(|_| bad(scheme, "malformed signature"))?;
            vk.verify_raw(signing_input, &sig)
                .map_err(|_| bad(scheme, "does not verify"))
        }
        Scheme::Ed25519 => {
            let key: [u8; 32] = public_key
                .try_into()
                .map_err(|_| bad(scheme, "the public key is not 32 bytes"))?;
            let vk = ed25519_dalek::VerifyingKey::from_bytes(&key)
                .map_err(|_| bad(scheme, "the public key is not a valid point"))?;
            let sig = ed25519_dalek::Signature::from_slice(signature)
                .map_err(|_| bad(scheme, "malformed signature"))?;
            vk.verify_strict(signing_input, &sig)
                .map_err(|_| bad(scheme, "does not verify"))
        }
        Scheme::EcdsaP256 => {
            use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
            let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(public_key)
                .map_err(|_| bad(scheme, "the public key is not a P-256 point"))?;
            if signing_input.len() != 32 || signature.len() != 64 {
                return Err(bad(
                    scheme,
                    "expected a 32-byte digest and a 64-byte signature",
                ));
            }
            let sig = p256::ecdsa::Signature::from_slice(signature)
                .map_err(|_| bad(scheme, "malformed (r, s)"))?;
            if sig.normalize_s().is_some() {
                return Err(bad(scheme, "s is not low"));
            }
            vk.verify_prehash(signing_input, &sig)
                .map_err(|_| bad(scheme, "does not verify"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `finished_signature` fuzz harness: a Taproot key or signature of another
    /// length (a module's signature is untrusted input) made k256 panic instead of refusing.
    #[test]
    fn taproot_inputs_of_any_length_are_refused_not_a_panic() {
        let key = [2u8; 32];
        let sig = [1u8; 64];
        for len in [0, 1, 31, 33, 64] {
            let short = vec![7u8; len];
            for (k, s) in [(&short[..], &sig[..]), (&key[..], &short[..])] {
                let e = verify_signature(Scheme::SchnorrTaproot, k, b"m", s).unwrap_err();
                assert!(matches!(e, WireError::InvalidSignature(_)), "{e}");
            }
        }
        // Every scheme, empty inputs: an error each.
        for scheme in Scheme::ALL {
            assert!(verify_signature(scheme, &[], &[], &[]).is_err());
        }
    }
}
