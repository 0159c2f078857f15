//! Kraken's REST request signature (docs.kraken.com, "Spot REST Authentication").
//!
//! Only the signer is provided: this crate has **no Kraken connector**. Kraken authenticates
//! private calls with an HMAC-SHA512 secret. An HMAC secret cannot be sharded across modules
//! (computing the HMAC needs the whole key in one place), so a Kraken withdraw-capable key
//! cannot get the threshold protection Binance's Ed25519 keys get (DESIGN flow 4).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use zeroize::Zeroizing;

use crate::ExchangeError;

/// The value of Kraken's `API-Sign` header: base64 of
/// HMAC-SHA512(key = base64-decoded secret, message = `uri_path` ‖ SHA256(`nonce` ‖ `post_data`)).
///
/// `uri_path` is the part of the URL starting with `/0/private`; `post_data` is the exact
/// form-encoded body, which itself contains `nonce=<nonce>`.
pub fn api_sign(
    uri_path: &str,
    nonce: u64,
    post_data: &str,
    secret_base64: &str,
) -> Result<String, ExchangeError> {
    let secret = Zeroizing::new(BASE64.decode(secret_base64.trim()).map_err(|e| {
        ExchangeError::InvalidKey(format!("the Kraken secret is not standard base64: {e}"))
    })?);
    if secret.is_empty() {
        return Err(ExchangeError::InvalidKey(
            "the Kraken secret is empty".to_owned(),
        ));
    }
    let inner = Sha256::new()
        .chain_update(nonce.to_string().as_bytes())
        .chain_update(post_data.as_bytes())
        .finalize();
    let mut mac = Hmac::<Sha512>::new_from_slice(&secret)
        .map_err(|e| ExchangeError::Signing(format!("HMAC key rejected: {e}")))?;
    mac.update(uri_path.as_bytes());
    mac.update(&inner);
    Ok(BASE64.encode(mac.finalize().into_bytes()))
}
