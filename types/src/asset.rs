//! Asset symbols: `SOU`, `USDT`, ...

use std::fmt;
use std::str::FromStr;

use borsh::{BorshDeserialize, BorshSerialize};

use crate::codec::{invalid, InlineStr};
use crate::crypto::serde_via_str;
use crate::limits::MAX_SYMBOL_BYTES;
use crate::{Error, Result};

/// An asset's symbol: 1 to 8 characters of `A-Z` and `0-9`, starting with a
/// letter. Stored inline (no allocation) and compared as bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Symbol(InlineStr<MAX_SYMBOL_BYTES>);

/// The native token: staked by validators and delegators.
pub const NATIVE: Symbol = match InlineStr::new("SOU") {
    Some(s) => Symbol(s),
    None => panic!("the native symbol fits"),
};

impl Symbol {
    pub fn new(s: &str) -> Result<Symbol> {
        let b = s.as_bytes();
        let valid = !b.is_empty()
            && b[0].is_ascii_uppercase()
            && b.iter()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
        match InlineStr::new(s) {
            Some(inline) if valid => Ok(Symbol(inline)),
            _ => Err(Error::Symbol {
                input: s.to_string(),
            }),
        }
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl BorshSerialize for Symbol {
    fn serialize<W: borsh::io::Write>(&self, w: &mut W) -> borsh::io::Result<()> {
        self.0.serialize(w)
    }
}

impl BorshDeserialize for Symbol {
    fn deserialize_reader<R: borsh::io::Read>(r: &mut R) -> borsh::io::Result<Self> {
        let raw = InlineStr::<MAX_SYMBOL_BYTES>::deserialize_reader(r)?;
        Symbol::new(raw.as_str()).map_err(|e| invalid(e.to_string()))
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Symbol {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Symbol::new(s)
    }
}

serde_via_str!(Symbol);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_text_and_bytes_never_panic(s in "\\PC{0,12}", bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            if let Ok(sym) = Symbol::new(&s) {
                prop_assert_eq!(sym.as_str(), s.as_str());
            }
            if let Ok(sym) = borsh::from_slice::<Symbol>(&bytes) {
                prop_assert_eq!(borsh::to_vec(&sym).unwrap(), bytes);
            }
        }
    }

    #[test]
    fn valid_and_invalid() {
        assert_eq!(Symbol::new("USDT").unwrap().as_str(), "USDT");
        assert_eq!(Symbol::new("SOU").unwrap(), NATIVE);
        for bad in ["", "usdt", "1USD", "TOOLONGXX", "US-D", "US D"] {
            assert!(Symbol::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn borsh_rejects_invalid() {
        let bytes = borsh::to_vec("usd").unwrap();
        assert!(borsh::from_slice::<Symbol>(&bytes).is_err());
        let bytes = borsh::to_vec("ABCDEFGHIJK").unwrap();
        assert!(borsh::from_slice::<Symbol>(&bytes).is_err());
        let s = Symbol::new("USDT").unwrap();
        assert_eq!(
            borsh::from_slice::<Symbol>(&borsh::to_vec(&s).unwrap()).unwrap(),
            s
        );
    }
}
