//! Amounts: decimal strings in coin units (as exchanges and traders write them) to and from
//! base units (as the chain counts them). Conversion is alloy's; this adds the strictness a
//! custody system wants: no sign, no exponent, no more decimals than the coin has.

use alloy::primitives::U256;
use alloy::primitives::utils::{ParseUnits, Unit};

/// An amount in coin units as traders and exchanges write it: a plain decimal ("0.01"),
/// held in canonical form (no trailing zeros after the point) and serialized as that string.
/// Whether it fits a coin (its decimals) is checked where the coin is known:
/// [`Amount::parse`], [`Amount::to_base`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Amount(String);

impl Amount {
    /// Parses an amount of a coin with `decimals` decimals.
    pub fn parse(text: &str, decimals: u8) -> Result<Amount, String> {
        Ok(Amount::from_base(parse_amount(text, decimals)?, decimals))
    }

    /// The amount of `value` base units of a coin with `decimals` decimals.
    pub fn from_base(value: U256, decimals: u8) -> Amount {
        Amount(format_amount(value, decimals))
    }

    /// The amount in base units of a coin with `decimals` decimals.
    pub fn to_base(&self, decimals: u8) -> Result<U256, String> {
        parse_amount(&self.0, decimals)
    }

    /// The decimal text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The OpenAPI schema of what travels: the decimal text.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Amount {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(AMOUNT_PATTERN))
            .description(Some(
                "An amount in coin units, a plain decimal (`0.01`); written without trailing zeros.",
            ))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Amount {}

/// What an [`Amount`]'s text looks like (ECMA-262): digits, and at most one `.` with digits on
/// both sides.
#[cfg(feature = "openapi")]
const AMOUNT_PATTERN: &str = r"^[0-9]+(\.[0-9]+)?$";

impl std::fmt::Display for Amount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Amount {
    type Error = String;

    fn try_from(text: String) -> Result<Amount, String> {
        let (int, frac) = check_syntax(&text)?;
        let frac = frac.trim_end_matches('0');
        let int = match int.trim_start_matches('0') {
            "" => "0",
            i => i,
        };
        Ok(Amount(if frac.is_empty() {
            int.to_owned()
        } else {
            format!("{int}.{frac}")
        }))
    }
}

impl From<Amount> for String {
    fn from(a: Amount) -> String {
        a.0
    }
}

/// Splits a plain decimal (digits, at most one '.', digits on both sides of it).
fn check_syntax(value: &str) -> Result<(&str, &str), String> {
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
    Ok((int, frac))
}

/// Parses a positive decimal amount in coin units into base units.
pub fn parse_amount(value: &str, decimals: u8) -> Result<U256, String> {
    let (_, frac) = check_syntax(value)?;
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

    #[test]
    fn amounts_are_canonical_and_checked_on_the_way_in() {
        let a = Amount::parse("0.0100", 18).unwrap();
        assert_eq!(a.as_str(), "0.01");
        assert_eq!(a.to_base(18).unwrap(), parse_amount("0.01", 18).unwrap());
        assert!(Amount::parse("0.001", 2).is_err());
        let json: Amount = serde_json::from_str("\"007.50\"").unwrap();
        assert_eq!(json.to_string(), "7.5");
        assert_eq!(serde_json::to_string(&json).unwrap(), "\"7.5\"");
        assert!(serde_json::from_str::<Amount>("\"1e3\"").is_err());
        assert!(serde_json::from_str::<Amount>("\"-1\"").is_err());
    }
}
