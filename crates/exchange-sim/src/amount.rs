//! Decimal amounts as Binance writes them ("0.10000000") and the chain's integer base units.
//!
//! Every balance is kept in the coin's base units (wei for ETH, the token's smallest unit for
//! an ERC-20) as a `U256`; decimal strings are parsed and printed only at the edges.

use alloy::primitives::U256;

/// Why a decimal string is not an amount of a coin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmountError {
    /// Not of the form `digits[.digits]`.
    Malformed,
    /// More fractional digits than the coin has decimals.
    TooPrecise,
    /// Larger than 2^256 - 1 base units.
    Overflow,
}

/// Parses a non-negative decimal string (`"1"`, `"0.25"`, `"10.000"`) into base units of a coin
/// with `decimals` decimals.
pub fn parse_amount(text: &str, decimals: u8) -> Result<U256, AmountError> {
    let (int_part, frac_part) = match text.split_once('.') {
        Some((i, f)) => (i, f),
        None => (text, ""),
    };
    if int_part.is_empty()
        || int_part.len() > 40
        || !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
        || (text.contains('.') && frac_part.is_empty())
    {
        return Err(AmountError::Malformed);
    }
    let frac_trimmed = frac_part.trim_end_matches('0');
    if frac_trimmed.len() > usize::from(decimals) {
        return Err(AmountError::TooPrecise);
    }
    let scale = U256::from(10u8).pow(U256::from(decimals));
    let int_value = U256::from_str_radix(int_part, 10).map_err(|_| AmountError::Overflow)?;
    let mut frac_value = U256::ZERO;
    if !frac_trimmed.is_empty() {
        let digits = U256::from_str_radix(frac_trimmed, 10).map_err(|_| AmountError::Overflow)?;
        let pad = u32::from(decimals) - frac_trimmed.len() as u32;
        frac_value = digits
            .checked_mul(U256::from(10u8).pow(U256::from(pad)))
            .ok_or(AmountError::Overflow)?;
    }
    int_value
        .checked_mul(scale)
        .and_then(|v| v.checked_add(frac_value))
        .ok_or(AmountError::Overflow)
}

/// Prints base units as a decimal string the way Binance does: at least eight fractional
/// digits ("0.10000000"), more when the value needs them, never rounded.
pub fn format_amount(value: U256, decimals: u8) -> String {
    let digits = value.to_string();
    let decimals = usize::from(decimals);
    let (int_part, frac_part) = if digits.len() > decimals {
        let split = digits.len() - decimals;
        (digits[..split].to_string(), digits[split..].to_string())
    } else {
        ("0".to_string(), format!("{digits:0>decimals$}"))
    };
    let mut frac = frac_part.trim_end_matches('0').to_string();
    while frac.len() < 8 {
        frac.push('0');
    }
    format!("{int_part}.{frac}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        let one_eth = U256::from(10u64).pow(U256::from(18u8));
        assert_eq!(parse_amount("1", 18), Ok(one_eth));
        assert_eq!(parse_amount("1.0", 18), Ok(one_eth));
        assert_eq!(
            parse_amount("0.000000000000000001", 18),
            Ok(U256::from(1u8))
        );
        assert_eq!(
            parse_amount("0.0000000000000000010", 18),
            Ok(U256::from(1u8))
        );
        assert_eq!(
            parse_amount("0.0000000000000000001", 18),
            Err(AmountError::TooPrecise)
        );
        for bad in [
            "", ".", "1.", ".5", "-1", "1e5", "1,5", " 1", "0x10", "1.2.3",
        ] {
            assert_eq!(
                parse_amount(bad, 18),
                Err(AmountError::Malformed),
                "{bad:?}"
            );
        }
        assert_eq!(format_amount(one_eth, 18), "1.00000000");
        assert_eq!(format_amount(U256::ZERO, 18), "0.00000000");
        assert_eq!(format_amount(U256::from(1u8), 18), "0.000000000000000001");
        assert_eq!(format_amount(U256::from(1234u32), 2), "12.34000000");
        let v = parse_amount("8.91", 6).unwrap();
        assert_eq!(format_amount(v, 6), "8.91000000");
    }
}
