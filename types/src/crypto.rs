//! ed25519 keys and signatures (ed25519-dalek), single and batch verification.

use std::fmt;
use std::str::FromStr;

use borsh::{BorshDeserialize, BorshSerialize};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use crate::hash::parse_hex_array;
use crate::{Error, Hash, Result};

/// An ed25519 public key as its 32 compressed bytes. Whether the bytes are a
/// usable key is checked when it verifies something ([`PublicKey::verifying_key`]).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct PublicKey(pub [u8; 32]);

/// An ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Signature(pub [u8; 64]);

impl PublicKey {
    /// Decompresses the key, refusing encodings that are not points on the
    /// curve and weak (small-order) keys, for which a signature proves nothing.
    pub fn verifying_key(&self) -> Result<VerifyingKey> {
        let key = VerifyingKey::from_bytes(&self.0).map_err(|e| Error::PublicKey(e.to_string()))?;
        if key.is_weak() {
            return Err(Error::PublicKey("small-order key".into()));
        }
        Ok(key)
    }

    /// Verifies `signature` over the 32-byte `message` digest.
    pub fn verify(&self, message: &Hash, signature: &Signature) -> Result<()> {
        let key = self.verifying_key()?;
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        key.verify_strict(&message.0, &sig)
            .map_err(|_| Error::BadSignature)
    }
}

/// Verifies many `(key, message digest, signature)` triples at once, which is
/// about twice as fast per signature as one by one. Returns, for each item,
/// whether it is valid: when the batch as a whole fails, each item is checked
/// on its own so that one bad signature does not condemn its neighbours.
pub fn verify_batch(items: &[(PublicKey, Hash, Signature)]) -> Vec<bool> {
    let mut keys = Vec::with_capacity(items.len());
    let mut ok = vec![true; items.len()];
    for (i, k) in cached_keys(items).into_iter().enumerate() {
        match k {
            Some(k) => keys.push(k),
            None => {
                ok[i] = false;
                // A placeholder keeps indexes aligned; the item is already failed.
                keys.push(VerifyingKey::default());
            }
        }
    }
    let usable: Vec<usize> = (0..items.len()).filter(|&i| ok[i]).collect();
    let messages: Vec<&[u8]> = usable.iter().map(|&i| &items[i].1 .0[..]).collect();
    let sigs: Vec<ed25519_dalek::Signature> = usable
        .iter()
        .map(|&i| ed25519_dalek::Signature::from_bytes(&items[i].2 .0))
        .collect();
    let batch_keys: Vec<VerifyingKey> = usable.iter().map(|&i| keys[i]).collect();
    if ed25519_dalek::verify_batch(&messages, &sigs, &batch_keys).is_ok() {
        return ok;
    }
    for &i in &usable {
        ok[i] = items[i].0.verify(&items[i].1, &items[i].2).is_ok();
    }
    ok
}

/// The arithmetic ed25519 verification runs on, on this machine:
/// `avx512ifma` when curve25519-dalek was built with its AVX-512 backend
/// (`.cargo/config.toml` asks for it; it is chosen at run time) and the CPU
/// has AVX-512 IFMA, else `avx2`, else `serial`. Batch verification is
/// about a third faster with the first than with the second.
pub fn verify_backend() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        // Asked for by the config, or picked by curve25519-dalek itself
        // when the build targets a CPU with IFMA (`-C target-cpu=native`).
        let built = cfg!(curve25519_dalek_backend = "avx512")
            || cfg!(all(
                target_feature = "avx512ifma",
                target_feature = "avx512vl"
            ));
        if built
            && std::arch::is_x86_feature_detected!("avx512ifma")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            return "avx512ifma";
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return "avx2";
        }
    }
    "serial"
}

/// Most decompressed keys kept (about 200 bytes each).
const KEY_CACHE_MAX: usize = 1 << 17;

/// Decompressed keys of recent signers. Decompressing a key (a square root
/// in the field) is about a sixth of the cost of checking a signature in a
/// batch, and a payment chain's senders sign again and again.
fn key_cache() -> &'static std::sync::Mutex<std::collections::HashMap<[u8; 32], VerifyingKey>> {
    static CACHE: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<[u8; 32], VerifyingKey>>,
    > = std::sync::OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The usable key of each item (`None`: not a point, or a weak key), from
/// the cache where it can.
fn cached_keys(items: &[(PublicKey, Hash, Signature)]) -> Vec<Option<VerifyingKey>> {
    let lock = || {
        key_cache()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    let mut keys: Vec<Option<VerifyingKey>> = {
        let cache = lock();
        items
            .iter()
            .map(|(pk, _, _)| cache.get(&pk.0).copied())
            .collect()
    };
    let mut fresh = Vec::new();
    for (slot, (pk, _, _)) in keys.iter_mut().zip(items) {
        if slot.is_none() {
            *slot = pk.verifying_key().ok();
            if let Some(k) = slot {
                fresh.push((pk.0, *k));
            }
        }
    }
    if !fresh.is_empty() {
        let mut cache = lock();
        if cache.len() + fresh.len() > KEY_CACHE_MAX {
            cache.clear();
        }
        cache.extend(fresh);
    }
    keys
}

impl Signature {
    pub const fn zero() -> Signature {
        Signature([0; 64])
    }
}

/// A secret key with its public half.
pub struct Keypair {
    signing: SigningKey,
}

impl Keypair {
    /// A fresh key from the operating system's randomness.
    pub fn generate() -> Result<Keypair> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|e| Error::Randomness(e.to_string()))?;
        Ok(Keypair::from_secret(seed))
    }

    /// The key whose 32-byte secret is `secret`.
    pub fn from_secret(secret: [u8; 32]) -> Keypair {
        Keypair {
            signing: SigningKey::from_bytes(&secret),
        }
    }

    /// A key derived deterministically from a seed and a label, for dev and
    /// test networks only: anyone who knows the seed knows the key.
    pub fn derive_insecure(seed: u64, label: &str) -> Keypair {
        let mut h = Hash::hasher("sou dev key derivation v1");
        h.update(&seed.to_le_bytes());
        h.update(label.as_bytes());
        Keypair::from_secret(*h.finalize().as_bytes())
    }

    pub fn secret_bytes(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key().to_bytes())
    }

    pub fn address(&self) -> crate::Address {
        crate::Address(self.public().0)
    }

    /// Signs a 32-byte digest.
    pub fn sign(&self, message: &Hash) -> Signature {
        Signature(self.signing.sign(&message.0).to_bytes())
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair({})", self.address())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex::encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey(0x{})", hex::encode(&self.0[..6]))
    }
}

impl FromStr for PublicKey {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        parse_hex_array(s).map(PublicKey)
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature(0x{}..)", hex::encode(&self.0[..6]))
    }
}

impl FromStr for Signature {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        parse_hex_array(s).map(Signature)
    }
}

macro_rules! serde_via_str {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(
                d: D,
            ) -> std::result::Result<Self, D::Error> {
                let s = <String as serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use serde_via_str;

serde_via_str!(PublicKey);
serde_via_str!(Signature);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn signature() -> impl Strategy<Value = Signature> {
        (any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(a, b)| {
            let mut s = [0u8; 64];
            s[..32].copy_from_slice(&a);
            s[32..].copy_from_slice(&b);
            Signature(s)
        })
    }

    proptest! {
        #[test]
        fn untrusted_keys_and_signatures_never_panic(
            items in proptest::collection::vec((any::<[u8; 32]>(), any::<[u8; 32]>(), signature()), 0..6),
            good in 0usize..4,
        ) {
            // Keys and signatures come from transactions: any bytes at all.
            let mut items: Vec<(PublicKey, Hash, Signature)> = items
                .into_iter()
                .map(|(k, m, s)| (PublicKey(k), Hash(m), s))
                .collect();
            // Some valid ones among them.
            for i in 0..good {
                let k = Keypair::derive_insecure(i as u64, "fuzz");
                let m = Hash::domain("sou test v1", &[i as u8]);
                items.push((k.public(), m, k.sign(&m)));
            }
            let batch = verify_batch(&items);
            let one_by_one: Vec<bool> = items.iter().map(|(k, m, s)| k.verify(m, s).is_ok()).collect();
            prop_assert_eq!(&batch, &one_by_one);
            prop_assert!(batch[batch.len() - good..].iter().all(|ok| *ok));
        }

        #[test]
        fn parsing_arbitrary_text_never_panics(s in "(0x)?[0-9a-f]{0,130}|\\PC{0,130}") {
            if let Ok(k) = s.parse::<PublicKey>() {
                prop_assert_eq!(k.to_string().parse::<PublicKey>().unwrap(), k);
            }
            if let Ok(sig) = s.parse::<Signature>() {
                prop_assert_eq!(sig.to_string().parse::<Signature>().unwrap(), sig);
            }
        }
    }

    #[test]
    fn sign_and_verify() {
        let k = Keypair::derive_insecure(7, "a");
        let m = Hash::domain("sou test v1", b"m");
        let s = k.sign(&m);
        assert!(k.public().verify(&m, &s).is_ok());
        let other = Hash::domain("sou test v1", b"n");
        assert_eq!(k.public().verify(&other, &s), Err(Error::BadSignature));
    }

    #[test]
    fn batch_isolates_bad_items() {
        let items: Vec<_> = (0..8)
            .map(|i| {
                let k = Keypair::derive_insecure(1, &format!("k{i}"));
                let m = Hash::domain("sou test v1", &[i as u8]);
                (k.public(), m, k.sign(&m))
            })
            .collect();
        assert_eq!(verify_batch(&items), vec![true; 8]);
        let mut bad = items;
        bad[3].2 .0[0] ^= 1;
        bad[5].0 = PublicKey([0; 32]); // weak / not a usable key
        let ok = verify_batch(&bad);
        assert_eq!(ok, vec![true, true, true, false, true, false, true, true]);
    }

    /// Batches past a few hundred take the multiscalar path (Pippenger) of
    /// the vector backend in use: a bad signature among them is still
    /// found, and only it.
    #[test]
    fn a_large_batch_isolates_a_bad_item() {
        let mut items: Vec<_> = (0..600u32)
            .map(|i| {
                let k = Keypair::derive_insecure(2, &format!("k{i}"));
                let m = Hash::domain("sou test v1", &i.to_be_bytes());
                (k.public(), m, k.sign(&m))
            })
            .collect();
        assert!(verify_batch(&items).iter().all(|ok| *ok));
        items[417].1 = Hash::domain("sou test v1", b"another message");
        let ok = verify_batch(&items);
        assert!(!ok[417]);
        assert_eq!(ok.iter().filter(|ok| **ok).count(), 599);
    }

    /// On a CPU with AVX-512 IFMA, the faster backend is the one in use:
    /// fails if the build lost `.cargo/config.toml`'s backend setting. On
    /// other CPUs there is nothing to check.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_avx512_backend_is_used_where_the_cpu_has_it() {
        let ifma = std::arch::is_x86_feature_detected!("avx512ifma")
            && std::arch::is_x86_feature_detected!("avx512vl");
        if ifma {
            assert_eq!(
                verify_backend(),
                "avx512ifma",
                "the CPU has AVX-512 IFMA but curve25519-dalek's AVX-512 backend was not \
                 built: a RUSTFLAGS in the environment replaces .cargo/config.toml's"
            );
        }
    }

    #[test]
    fn derived_keys_are_deterministic() {
        assert_eq!(
            Keypair::derive_insecure(1, "x").public(),
            Keypair::derive_insecure(1, "x").public()
        );
        assert_ne!(
            Keypair::derive_insecure(1, "x").public(),
            Keypair::derive_insecure(2, "x").public()
        );
    }
}
