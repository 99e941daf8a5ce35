//! Amounts: unsigned integers in an asset's base units. Converting to and
//! from a decimal string in whole units never goes through floating point.

use std::fmt;
use std::str::FromStr;

use borsh::{BorshDeserialize, BorshSerialize};

use crate::crypto::serde_via_str;
use crate::{Error, Result};

/// An amount in base units (for a 6-decimal stablecoin, 1 USDT is 1_000_000).
/// Displayed and serialised as a decimal integer string, since JSON numbers
/// lose precision above 2^53.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, BorshSerialize, BorshDeserialize,
)]
pub struct Amount(pub u128);

/// Most decimals an asset may have: 10^38 is the largest power of ten in a u128.
pub const MAX_DECIMALS: u8 = 38;

impl Amount {
    pub const ZERO: Amount = Amount(0);

    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Shows the amount in whole units with `decimals` places, trailing zeros
    /// trimmed: `Amount(1_250_000).to_decimal(6) == "1.25"`.
    pub fn to_decimal(self, decimals: u8) -> String {
        let digits = self.0.to_string();
        let d = usize::from(decimals);
        if d == 0 {
            return digits;
        }
        let padded = if digits.len() <= d {
            format!("{}{}", "0".repeat(d + 1 - digits.len()), digits)
        } else {
            digits
        };
        let (int, frac) = padded.split_at(padded.len() - d);
        let frac = frac.trim_end_matches('0');
        if frac.is_empty() {
            int.to_string()
        } else {
            format!("{int}.{frac}")
        }
    }

    /// Parses whole units such as `"1.25"` into base units with `decimals`
    /// places. Refuses more fractional digits than the asset has, signs,
    /// exponents, empty input and overflow.
    pub fn from_decimal(input: &str, decimals: u8) -> Result<Amount> {
        let err = |reason: String| Error::Amount {
            input: input.to_string(),
            reason,
        };
        if decimals > MAX_DECIMALS {
            return Err(err(format!(
                "{decimals} decimals is over the maximum of {MAX_DECIMALS}"
            )));
        }
        let (int, frac) = match input.split_once('.') {
            Some((i, f)) => (i, f),
            None => (input, ""),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(err("no digits".into()));
        }
        if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
            return Err(err("only digits and one '.' are allowed".into()));
        }
        if frac.len() > usize::from(decimals) {
            return Err(err(format!(
                "{} decimal places, but the asset has {decimals}",
                frac.len()
            )));
        }
        let scale = 10u128.pow(u32::from(decimals));
        let overflow = || err("too large".into());
        let int_part: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| overflow())?
        };
        let frac_part: u128 = if frac.is_empty() {
            0
        } else {
            let f: u128 = frac.parse().map_err(|_| overflow())?;
            let pad = u32::from(decimals) - frac.len() as u32;
            f.checked_mul(10u128.pow(pad)).ok_or_else(overflow)?
        };
        int_part
            .checked_mul(scale)
            .and_then(|v| v.checked_add(frac_part))
            .map(Amount)
            .ok_or_else(overflow)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Amount {
    type Err = Error;
    /// Parses base units: a plain decimal integer.
    fn from_str(s: &str) -> Result<Self> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::Amount {
                input: s.to_string(),
                reason: "base units are a plain integer".into(),
            });
        }
        s.parse::<u128>().map(Amount).map_err(|_| Error::Amount {
            input: s.to_string(),
            reason: "too large".into(),
        })
    }
}

serde_via_str!(Amount);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decimal_display() {
        assert_eq!(Amount(1_250_000).to_decimal(6), "1.25");
        assert_eq!(Amount(1).to_decimal(6), "0.000001");
        assert_eq!(Amount(0).to_decimal(6), "0");
        assert_eq!(Amount(5_000_000).to_decimal(6), "5");
        assert_eq!(Amount(42).to_decimal(0), "42");
        assert_eq!(
            Amount(u128::MAX).to_decimal(38),
            "3.40282366920938463463374607431768211455"
        );
    }

    #[test]
    fn decimal_parse() {
        assert_eq!(Amount::from_decimal("1.25", 6).unwrap(), Amount(1_250_000));
        assert_eq!(Amount::from_decimal(".5", 6).unwrap(), Amount(500_000));
        assert_eq!(Amount::from_decimal("7", 0).unwrap(), Amount(7));
        assert!(Amount::from_decimal("1.2345678", 6)
            .unwrap_err()
            .to_string()
            .contains("7 decimal places"));
        for bad in ["", ".", "-1", "1e5", "1.2.3", " 1", "+1", "1,5"] {
            assert!(Amount::from_decimal(bad, 6).is_err(), "{bad:?} accepted");
        }
        assert!(Amount::from_decimal("340282366920938463463374607431768211456", 0).is_err());
        assert!(Amount::from_decimal("1000000000000000000000000000000000", 6).is_err());
    }

    proptest! {
        #[test]
        fn decimal_round_trip(v: u128, decimals in 0u8..=38) {
            let s = Amount(v).to_decimal(decimals);
            prop_assert_eq!(Amount::from_decimal(&s, decimals).unwrap(), Amount(v));
        }

        #[test]
        fn parsing_arbitrary_text_never_panics(s in "[0-9.]{0,45}|\\PC{0,45}", decimals: u8) {
            if let Ok(v) = s.parse::<Amount>() {
                prop_assert_eq!(v.to_string().parse::<Amount>().unwrap(), v);
            }
            if let Ok(v) = Amount::from_decimal(&s, decimals) {
                prop_assert!(decimals <= MAX_DECIMALS);
                prop_assert_eq!(Amount::from_decimal(&v.to_decimal(decimals), decimals).unwrap(), v);
            }
        }
    }
}
