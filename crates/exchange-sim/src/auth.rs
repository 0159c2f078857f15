//! Binance's SIGNED endpoint security, verified independently from the documentation
//! ("SIGNED (TRADE and USER_DATA) Endpoint security", Binance spot API docs, `rest-api.md`):
//!
//! - the API key travels in the `X-MBX-APIKEY` header;
//! - `totalParams` is the query string concatenated with the request body (no `&` between
//!   them), exactly as sent, i.e. still percent-encoded, without the `signature` parameter;
//! - HMAC keys: `signature` = hex(HMAC-SHA256(secretKey, totalParams)), not case sensitive;
//! - Ed25519 keys: `signature` = base64(Ed25519(totalParams)), percent-encoded when sent,
//!   case sensitive; verified with `verify_strict`;
//! - `timestamp` (milliseconds, or microseconds) must satisfy
//!   `timestamp < serverTime + 1000 && serverTime - timestamp <= recvWindow`, with `recvWindow`
//!   defaulting to 5000 and at most 60000 (three decimals allowed, for microseconds).

use base64::Engine as _;
use ed25519_dalek::{Signature, VerifyingKey};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE { SEQUENCE { OID
/// 1.3.101.112 }, BIT STRING (33 bytes, 0 unused bits) }.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Whether a string has the form of a Binance API key: 64 ASCII letters and digits.
pub fn valid_api_key_format(key: &str) -> bool {
    key.len() == 64 && key.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Parses an Ed25519 public key given as PEM (`-----BEGIN PUBLIC KEY-----`, SPKI DER inside,
/// the form Binance users upload) or as 32 bytes in hex (with or without `0x`).
pub fn parse_ed25519_public_key(text: &str) -> Result<VerifyingKey, String> {
    let text = text.trim();
    let raw: [u8; 32] = if text.starts_with("-----BEGIN") {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        if lines.next() != Some("-----BEGIN PUBLIC KEY-----") {
            return Err("the PEM block is not a PUBLIC KEY".into());
        }
        let mut body = String::new();
        let mut ended = false;
        for line in lines {
            if line == "-----END PUBLIC KEY-----" {
                ended = true;
                break;
            }
            body.push_str(line);
        }
        if !ended {
            return Err("the PEM block has no END PUBLIC KEY line".into());
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|e| format!("the PEM body is not base64: {e}"))?;
        if der.len() != ED25519_SPKI_PREFIX.len() + 32 || der[..12] != ED25519_SPKI_PREFIX {
            return Err("the PEM key is not an Ed25519 SubjectPublicKeyInfo".into());
        }
        let mut raw = [0u8; 32];
        raw.copy_from_slice(&der[12..]);
        raw
    } else {
        let hex_text = text.strip_prefix("0x").unwrap_or(text);
        let bytes = hex::decode(hex_text)
            .map_err(|_| "the public key is neither PEM nor hex".to_string())?;
        bytes
            .try_into()
            .map_err(|_| "a hex Ed25519 public key has 32 bytes".to_string())?
    };
    VerifyingKey::from_bytes(&raw).map_err(|_| "not a valid Ed25519 public key".to_string())
}

/// The PEM (SPKI) form of an Ed25519 public key, as a Binance user would upload it.
pub fn ed25519_public_key_pem(key: &VerifyingKey) -> String {
    let mut der = ED25519_SPKI_PREFIX.to_vec();
    der.extend_from_slice(key.as_bytes());
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(der)
    )
}

/// Checks a hex HMAC-SHA256 signature (either case) in constant time.
pub fn verify_hmac(secret: &[u8], payload: &[u8], signature_hex: &str) -> bool {
    let Ok(signature) = hex::decode(signature_hex) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(payload);
    mac.verify_slice(&signature).is_ok()
}

/// Checks a base64 Ed25519 signature with `verify_strict` (rejects small-order keys and
/// non-canonical signatures).
pub fn verify_ed25519(key: &VerifyingKey, payload: &[u8], signature_b64: &str) -> bool {
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(signature_b64) else {
        return false;
    };
    let Ok(bytes) = <[u8; 64]>::try_from(bytes.as_slice()) else {
        return false;
    };
    key.verify_strict(payload, &Signature::from_bytes(&bytes))
        .is_ok()
}

/// The `signature` parameter taken out of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitSignature {
    /// `totalParams`: query string (without the signature) followed by the body (without it).
    pub payload: String,
    /// The signature value, percent-decoded (a `+` stays a `+`: base64 never holds a space).
    pub signature: String,
}

/// Why the signature could not be taken out of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitError {
    /// No `signature` parameter, or an empty one.
    Missing,
    /// `signature` appears more than once, or is not the last parameter of its part.
    Misplaced,
}

/// Takes the `signature` parameter out of the raw query string and body. The signature must be
/// the last parameter of the part that carries it (clients append it after signing).
pub fn split_signature(query: &str, body: &str) -> Result<SplitSignature, SplitError> {
    let mut found: Option<(bool, String, String)> = None; // (in query, rest of part, value)
    for (in_query, part) in [(true, query), (false, body)] {
        let pairs: Vec<&str> = if part.is_empty() {
            Vec::new()
        } else {
            part.split('&').collect()
        };
        for (i, pair) in pairs.iter().enumerate() {
            let name = pair.split_once('=').map_or(*pair, |(n, _)| n);
            if name != "signature" {
                continue;
            }
            if found.is_some() || i + 1 != pairs.len() {
                return Err(SplitError::Misplaced);
            }
            let value = pair.split_once('=').map_or("", |(_, v)| v);
            let decoded = percent_decode(value).ok_or(SplitError::Missing)?;
            if decoded.is_empty() {
                return Err(SplitError::Missing);
            }
            let rest = pairs[..i].join("&");
            found = Some((in_query, rest, decoded));
        }
    }
    let Some((in_query, rest, signature)) = found else {
        return Err(SplitError::Missing);
    };
    let payload = if in_query {
        format!("{rest}{body}")
    } else {
        format!("{query}{rest}")
    };
    Ok(SplitSignature { payload, signature })
}

/// Percent-decodes a string (no `+` to space); `None` if the result is not UTF-8.
fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(byte) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// A parsed `timestamp` or `recvWindow`, in microseconds.
pub type Micros = u128;

/// Parses `timestamp`: milliseconds (13 digits today) or microseconds (16 digits today).
pub fn parse_timestamp(text: &str) -> Option<Micros> {
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: u128 = text.parse().ok()?;
    // Anything from 10^14 on is taken as microseconds (10^14 ms is in the year 5138).
    Some(if value >= 100_000_000_000_000 {
        value
    } else {
        value * 1000
    })
}

/// Parses `recvWindow`: milliseconds with at most three decimals.
pub fn parse_recv_window(text: &str) -> Option<Micros> {
    let (int_part, frac) = text.split_once('.').unwrap_or((text, ""));
    if int_part.is_empty()
        || int_part.len() > 20
        || frac.len() > 3
        || (text.contains('.') && frac.is_empty())
        || !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let ms: u128 = int_part.parse().ok()?;
    let frac_us: u128 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<3}").parse().ok()?
    };
    Some(ms * 1000 + frac_us)
}

/// The timing rule: `Ok` when the request is inside its window, `Err(true)` when it is more
/// than a second ahead of the server, `Err(false)` when it is older than its window.
pub fn check_timing(
    timestamp: Micros,
    recv_window: Micros,
    server_time: Micros,
) -> Result<(), bool> {
    if timestamp >= server_time + 1_000_000 {
        return Err(true);
    }
    if server_time.saturating_sub(timestamp) > recv_window {
        return Err(false);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Binance's documented example (rest-api.md, "SIGNED Endpoint Examples for POST
    /// /api/v3/order", HMAC): the same payload as query or body gives the same signature.
    const DOC_SECRET: &str = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";
    const DOC_PAYLOAD: &str = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559";
    const DOC_SIGNATURE: &str = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71";

    #[test]
    fn documented_hmac_example_verifies() {
        assert!(verify_hmac(
            DOC_SECRET.as_bytes(),
            DOC_PAYLOAD.as_bytes(),
            DOC_SIGNATURE
        ));
        assert!(verify_hmac(
            DOC_SECRET.as_bytes(),
            DOC_PAYLOAD.as_bytes(),
            &DOC_SIGNATURE.to_uppercase()
        ));
        let mut wrong = DOC_SIGNATURE.to_string();
        wrong.replace_range(0..1, "d");
        assert!(!verify_hmac(
            DOC_SECRET.as_bytes(),
            DOC_PAYLOAD.as_bytes(),
            &wrong
        ));
        // Example 3: mixed query string and body, concatenated without '&'.
        let split = split_signature(
            "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC",
            "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559&signature=0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77",
        )
        .unwrap();
        assert!(verify_hmac(
            DOC_SECRET.as_bytes(),
            split.payload.as_bytes(),
            &split.signature
        ));
        // Example 1 (body) and 2 (query).
        let body = format!("{DOC_PAYLOAD}&signature={DOC_SIGNATURE}");
        let split = split_signature("", &body).unwrap();
        assert_eq!(split.payload, DOC_PAYLOAD);
        let split = split_signature(&body, "").unwrap();
        assert_eq!(split.payload, DOC_PAYLOAD);
        assert_eq!(split.signature, DOC_SIGNATURE);
    }

    #[test]
    fn documented_sample_public_key_parses() {
        // faqs/api_key_types.md, "Sample Ed25519 key".
        let pem = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAgmDRTtj2FA+wzJUIlAL9ly1eovjLBu7uXUFR+jFULmg=\n-----END PUBLIC KEY-----\n";
        let key = parse_ed25519_public_key(pem).unwrap();
        assert_eq!(ed25519_public_key_pem(&key), pem);
        let hex_form = hex::encode(key.as_bytes());
        assert_eq!(parse_ed25519_public_key(&hex_form).unwrap(), key);
        assert!(
            parse_ed25519_public_key("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----")
                .is_err()
        );
        assert!(parse_ed25519_public_key("abcd").is_err());
    }

    #[test]
    fn signature_placement() {
        assert_eq!(split_signature("a=1", ""), Err(SplitError::Missing));
        assert_eq!(
            split_signature("a=1&signature=", ""),
            Err(SplitError::Missing)
        );
        assert_eq!(
            split_signature("signature=ab&a=1", ""),
            Err(SplitError::Misplaced)
        );
        assert_eq!(
            split_signature("a=1&signature=ab", "b=2&signature=cd"),
            Err(SplitError::Misplaced)
        );
        let split = split_signature("a=1&signature=q%2Bw%3D%3D", "").unwrap();
        assert_eq!(split.signature, "q+w==");
        assert_eq!(split.payload, "a=1");
    }

    #[test]
    fn timing_rule() {
        let server = 1_700_000_000_000_000u128;
        let window = parse_recv_window("5000").unwrap();
        assert_eq!(window, 5_000_000);
        assert_eq!(parse_recv_window("6000.346"), Some(6_000_346));
        assert_eq!(parse_recv_window("1.2345"), None);
        assert_eq!(parse_recv_window("-1"), None);
        assert_eq!(parse_timestamp("1700000000000"), Some(server));
        assert_eq!(parse_timestamp("1700000000000000"), Some(server));
        assert_eq!(parse_timestamp("17e11"), None);
        assert!(check_timing(server, window, server).is_ok());
        assert!(check_timing(server - 5_000_000, window, server).is_ok());
        assert_eq!(check_timing(server - 5_000_001, window, server), Err(false));
        assert!(check_timing(server + 999_999, window, server).is_ok());
        assert_eq!(check_timing(server + 1_000_000, window, server), Err(true));
    }
}
