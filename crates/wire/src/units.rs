//! Amounts: decimal strings in coin units (as exchanges and traders write them) to and from
//! base units (as the chain counts them). Conversion is alloy's; this adds the strictness a
//! custody system wants: no sign, no exponent, no more decimals than the coin has.

use alloy::primitives::U256;
use alloy::primitives::utils::{ParseUnits, Unit};

/// Parses a positive decimal amount in coin units into base units.
pub fn parse_amount(value: &str, decimals: u8) -> Result<U256, String> {
    let (int, frac) = value.split_once('.').unwrap_or((value, ""));
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || (value.contains('.') && frac.is_empty())
    {
        return Err(format!(
            "{value:?} is not a plain decimal amount (digits, at most one '.')"
        ));
    }
    if frac.len() > usize::from(decimals) {
        return Err(format!(
            "{value:?} has {} decimals; this coin has {decimals}",
            frac.len()
        ));
    }
    let unit = Unit::new(decimals).ok_or_else(|| format!("{decimals} decimals are too many"))?;
    match ParseUnits::parse_units(value, unit) {
        Ok(ParseUnits::U256(v)) => Ok(v),
        Ok(ParseUnits::I256(_)) => Err(format!("{value:?} is negative")),
        Err(e) => Err(format!("{value:?}: {e}")),
    }
}

/// Formats base units as a decimal amount in coin units, without trailing zeros.
pub fn format_amount(value: U256, decimals: u8) -> String {
    let Some(unit) = Unit::new(decimals) else {
        return value.to_string();
    };
    let s = ParseUnits::U256(value).format_units(unit);
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_round_trip_and_bad_ones_are_named() {
        let one_eth = U256::from(10u64).pow(U256::from(18u64));
        assert_eq!(parse_amount("1", 18).unwrap(), one_eth);
        assert_eq!(parse_amount("0.5", 18).unwrap(), one_eth / U256::from(2u64));
        assert_eq!(format_amount(one_eth / U256::from(2u64), 18), "0.5");
        assert_eq!(format_amount(one_eth * U256::from(3u64), 18), "3");
        assert_eq!(parse_amount("1.25", 2).unwrap(), U256::from(125u64));
        for bad in ["", "-1", "+1", "1e3", "1.", ".5", "1.2.3", "0x10", " 1"] {
            assert!(parse_amount(bad, 18).is_err(), "{bad:?} accepted");
        }
        let err = parse_amount("1.001", 2).unwrap_err();
        assert!(err.contains("3 decimals"), "{err}");
    }
}
