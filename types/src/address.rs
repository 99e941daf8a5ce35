//! Account addresses: an ed25519 public key, shown as bech32m with the `sou`
//! human-readable prefix (`sou1...`). The bech32m checksum catches every
//! typo of up to four characters, so a mistyped address is refused before
//! anything is signed or sent.

use std::fmt;
use std::str::FromStr;

use bech32::primitives::decode::CheckedHrpstring;
use bech32::{Bech32m, Hrp};
use borsh::{BorshDeserialize, BorshSerialize};

use crate::crypto::serde_via_str;
use crate::{Error, Hash, PublicKey, Result};

/// The human-readable prefix of every Sou address.
pub const ADDRESS_HRP: &str = "sou";

/// An account address: the 32 bytes of its ed25519 public key. Module
/// accounts (pools that hold stake or fees) have addresses derived from a
/// name, for which no secret key is known.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct Address(pub [u8; 32]);

impl Address {
    /// The address of the account whose signing key is `key`.
    pub fn from_public_key(key: &PublicKey) -> Address {
        Address(key.0)
    }

    /// The public key that signs for this address.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0)
    }

    /// The address of a module account, derived from its name. Nobody holds
    /// its secret key: it moves funds only by the ledger's rules.
    pub fn module(name: &str) -> Address {
        Address(Hash::domain("sou module account v1", name.as_bytes()).0)
    }

    fn hrp() -> Hrp {
        Hrp::parse_unchecked(ADDRESS_HRP)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        bech32::encode_to_fmt::<Bech32m, _>(f, Self::hrp(), &self.0).map_err(|_| fmt::Error)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl FromStr for Address {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let err = |reason: String| Error::Address {
            input: s.to_string(),
            reason,
        };
        let checked = CheckedHrpstring::new::<Bech32m>(s).map_err(|e| err(e.to_string()))?;
        if checked.hrp() != Self::hrp() {
            return Err(err(format!(
                "prefix is {:?}, expected {ADDRESS_HRP:?}",
                checked.hrp().as_str()
            )));
        }
        let bytes: Vec<u8> = checked.byte_iter().collect();
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| err(format!("{} bytes of data, expected 32", b.len())))?;
        Ok(Address(arr))
    }
}

serde_via_str!(Address);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keypair;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parsing_arbitrary_text_never_panics(s in "\\PC{0,80}") {
            if let Ok(a) = s.parse::<Address>() {
                prop_assert_eq!(a.to_string().parse::<Address>().unwrap(), a);
            }
        }

        #[test]
        fn any_one_character_changed_is_refused(bytes: [u8; 32], pos: usize, c in 0x21u8..0x7f) {
            // bech32m detects every error of up to four characters.
            let s = Address(bytes).to_string();
            let i = pos % s.len();
            prop_assume!(s.as_bytes()[i] != c);
            let mut changed = s.into_bytes();
            changed[i] = c;
            let changed = String::from_utf8(changed).unwrap();
            prop_assert!(changed.parse::<Address>().is_err(), "{} parsed", changed);
        }
    }

    #[test]
    fn round_trip() {
        let a = Keypair::derive_insecure(3, "a").address();
        let s = a.to_string();
        assert!(s.starts_with("sou1"), "{s}");
        assert_eq!(s.parse::<Address>().unwrap(), a);
    }

    #[test]
    fn typo_is_caught() {
        let s = Keypair::derive_insecure(3, "a").address().to_string();
        let mut chars: Vec<char> = s.chars().collect();
        let i = chars.len() / 2;
        chars[i] = if chars[i] == 'q' { 'p' } else { 'q' };
        let typo: String = chars.into_iter().collect();
        assert!(typo.parse::<Address>().is_err());
    }

    #[test]
    fn wrong_prefix_and_length_refused() {
        let a = Keypair::derive_insecure(3, "a").address();
        let other = bech32::encode::<Bech32m>(Hrp::parse("abc").unwrap(), &a.0).unwrap();
        assert!(other
            .parse::<Address>()
            .unwrap_err()
            .to_string()
            .contains("prefix"));
        let short = bech32::encode::<Bech32m>(Address::hrp(), &a.0[..20]).unwrap();
        assert!(short
            .parse::<Address>()
            .unwrap_err()
            .to_string()
            .contains("20 bytes"));
        let bech32_not_m = bech32::encode::<bech32::Bech32>(Address::hrp(), &a.0).unwrap();
        assert!(bech32_not_m.parse::<Address>().is_err());
    }
}
