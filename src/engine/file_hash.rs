//! Owns the content hashes A1111 shows for model files: the sha256 of a whole file (checkpoints:
//! `Model hash` is its first 10 hex digits) or of a `.safetensors` file's tensor bytes only (LoRAs:
//! the "addnet" hash, first 12 hex digits in `Lora hashes`), and a cache of them keyed by path,
//! size and modification time, so a multi-GB checkpoint is hashed once, not at every load.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// The sha256 (hex) of `path`'s bytes from `offset` to the end.
pub fn sha256_from(path: &Path, offset: u64) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// What identifies a file's content cheaply: its size and modification time.
fn stamp(path: &Path) -> Option<(u64, u128)> {
    let meta = std::fs::metadata(path).ok()?;
    let modified = meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos();
    Some((meta.len(), modified))
}

type Key = (PathBuf, u64, u64, u128);

/// Hashes already computed in this process (a file changed on disk gets a new size or time, so a
/// new entry).
static CACHE: Mutex<Option<HashMap<Key, String>>> = Mutex::new(None);

/// [`sha256_from`], remembered for the life of the process.
pub fn cached_sha256_from(path: &Path, offset: u64) -> std::io::Result<String> {
    let key = stamp(path).map(|(len, modified)| (path.to_path_buf(), offset, len, modified));
    if let Some(key) = &key {
        if let Some(hash) = CACHE.lock().expect("hash cache").get_or_insert_with(HashMap::new).get(key) {
            return Ok(hash.clone());
        }
    }
    let hash = sha256_from(path, offset)?;
    if let Some(key) = key {
        CACHE.lock().expect("hash cache").get_or_insert_with(HashMap::new).insert(key, hash.clone());
    }
    Ok(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_whole_files_and_tails_and_notices_changes() {
        let path = std::env::temp_dir().join(format!("easel-hash-{}", std::process::id()));
        std::fs::write(&path, b"abc").unwrap();
        // sha256("abc") and sha256("c"), the standard test vectors.
        assert_eq!(cached_sha256_from(&path, 0).unwrap(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(sha256_from(&path, 2).unwrap(), "2e7d2c03a9507ae265ecf5b5356885a53393a2029d241394997265a1a25aefc6");
        std::fs::write(&path, b"abcd").unwrap();
        assert_eq!(cached_sha256_from(&path, 0).unwrap(), "88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589");
        let _ = std::fs::remove_file(&path);
    }
}
