//! Key files: a JSON file holding an ed25519 secret key with its address, as
//! written by `sou keys new` and `sou testnet`, read by the wallet and the node.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sou_types::{Address, Keypair, PublicKey};

use crate::{Error, Result};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    pub address: Address,
    pub public_key: PublicKey,
    /// The 32-byte secret, `0x`-prefixed hex.
    pub secret_key: String,
}

impl KeyFile {
    pub fn from_keypair(k: &Keypair) -> KeyFile {
        KeyFile {
            address: k.address(),
            public_key: k.public(),
            secret_key: format!("0x{}", hex::encode(k.secret_bytes())),
        }
    }

    /// The key pair, after checking that the secret matches the address.
    pub fn keypair(&self) -> std::result::Result<Keypair, String> {
        // An optional `0x`, which the hex crate takes off.
        let mut secret = [0u8; 32];
        hex::decode_to_slice(&self.secret_key, &mut secret)
            .map_err(|e| format!("secret_key is not 32 bytes of hex: {e}"))?;
        let k = Keypair::from_secret(secret);
        if k.address() != self.address || k.public() != self.public_key {
            return Err("secret_key does not match address and public_key".into());
        }
        Ok(k)
    }

    /// Reads a key file and returns its key pair.
    pub fn read(path: &Path) -> Result<Keypair> {
        let err = |reason: String| Error::KeyFile {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let file: KeyFile = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        file.keypair().map_err(err)
    }

    /// Writes `key` to `path`, readable by the owner only. Refuses to
    /// overwrite an existing file: a key lost that way cannot come back.
    pub fn write(path: &Path, key: &Keypair) -> Result<()> {
        let io = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let json = serde_json::to_string_pretty(&KeyFile::from_keypair(key)).map_err(|e| {
            Error::KeyFile {
                path: path.display().to_string(),
                reason: e.to_string(),
            }
        })?;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(path).map_err(io)?;
        std::io::Write::write_all(&mut f, json.as_bytes()).map_err(io)?;
        std::io::Write::write_all(&mut f, b"\n").map_err(io)?;
        f.sync_all().map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_and_refuse_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.json");
        let k = Keypair::derive_insecure(1, "k");
        KeyFile::write(&path, &k).unwrap();
        assert_eq!(KeyFile::read(&path).unwrap().address(), k.address());
        assert!(KeyFile::write(&path, &k).is_err(), "overwrote a key file");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn mismatched_secret_refused() {
        let mut f = KeyFile::from_keypair(&Keypair::derive_insecure(1, "a"));
        f.secret_key = KeyFile::from_keypair(&Keypair::derive_insecure(1, "b")).secret_key;
        assert!(f.keypair().unwrap_err().contains("does not match"));
    }
}
