//! Query-string assembly in one canonical form: every byte outside RFC 3986's unreserved set
//! (`A-Z a-z 0-9 - _ . ~`) percent-encoded with uppercase hex, as Binance's request-security
//! examples do (`%EF%BC%91`, `%2F`, `%2B`, `%3D`).

use crate::ExchangeError;

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

/// Percent-encodes `value` canonically (see the module docs).
pub fn encode_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for &b in value.as_bytes() {
        if unreserved(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

/// Decodes a canonically encoded component, refusing anything [`encode_component`] would not
/// have produced (a reserved character left raw, lowercase hex, an unreserved byte encoded,
/// a truncated escape, bytes that are not UTF-8). `what` names the component in errors.
pub fn decode_canonical(raw: &str, what: &str) -> Result<String, ExchangeError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hi = bytes.get(i + 1).and_then(|&h| upper_hex(h));
            let lo = bytes.get(i + 2).and_then(|&l| upper_hex(l));
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(ExchangeError::InvalidRequest(format!(
                    "{what} has a malformed percent escape (canonical form uses two uppercase \
                     hex digits)"
                )));
            };
            let decoded = (hi << 4) | lo;
            if unreserved(decoded) {
                return Err(ExchangeError::InvalidRequest(format!(
                    "{what} percent-encodes the unreserved character '{}', which canonical \
                     form leaves as is",
                    char::from(decoded)
                )));
            }
            out.push(decoded);
            i += 3;
        } else if unreserved(b) {
            out.push(b);
            i += 1;
        } else {
            return Err(ExchangeError::InvalidRequest(format!(
                "{what} contains the character {:?} unencoded; canonical form percent-encodes it",
                char::from(b)
            )));
        }
    }
    String::from_utf8(out)
        .map_err(|_| ExchangeError::InvalidRequest(format!("{what} does not decode to UTF-8")))
}

fn upper_hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Joins `(name, value)` pairs in the given order as `name=value&...`, encoding each value.
pub fn build_query<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (name, value) in params {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&encode_component(name));
        out.push('=');
        out.push_str(&encode_component(value));
    }
    out
}

/// Whether `s` is a positive decimal in plain notation: digits, at most one point with digits
/// on both sides, no sign, no exponent, no leading zeros (other than `0.x`), at most 40 integer
/// and 18 fractional digits, and not zero.
pub fn is_positive_decimal(s: &str) -> bool {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    if int.is_empty() || int.len() > 40 || !int.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    if int.len() > 1 && int.starts_with('0') {
        return false;
    }
    if let Some(f) = frac
        && (f.is_empty() || f.len() > 18 || !f.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    s.bytes().any(|b| (b'1'..=b'9').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_binance_examples() {
        assert_eq!(
            encode_component("１２３４５６"),
            "%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96"
        );
        assert_eq!(encode_component("a/b+c="), "a%2Fb%2Bc%3D");
        assert_eq!(encode_component("AZaz09-_.~"), "AZaz09-_.~");
    }

    #[test]
    fn decode_round_trips_and_refuses_non_canonical() {
        for s in ["", "plain", "a b&c=d/é", "１２３"] {
            assert_eq!(decode_canonical(&encode_component(s), "x").unwrap(), s);
        }
        for bad in ["a b", "a%2f", "%41", "%E", "%ZZ", "a+b", "%FF"] {
            assert!(decode_canonical(bad, "x").is_err(), "{bad}");
        }
    }

    #[test]
    fn decimals() {
        for ok in [
            "1",
            "0.1",
            "10",
            "1.50",
            "0.000000000000000001",
            "123456.789",
        ] {
            assert!(is_positive_decimal(ok), "{ok}");
        }
        for bad in [
            "",
            "0",
            "0.0",
            "00.1",
            "01",
            ".5",
            "5.",
            "-1",
            "+1",
            "1e5",
            "1,5",
            "1.2.3",
            " 1",
            "0.0000000000000000001",
            "NaN",
        ] {
            assert!(!is_positive_decimal(bad), "{bad}");
        }
    }
}
