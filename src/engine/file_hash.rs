//! Owns the content hashes A1111 shows for model files: the sha256 of a whole file (checkpoints:
//! `Model hash` is its first 10 hex digits) or of a `.safetensors` file's tensor bytes only (LoRAs:
//! the "addnet" hash, first 12 hex digits in `Lora hashes`), and a cache of them keyed by path,
//! size and modification time, so a multi-GB checkpoint is hashed once, not at every load. Once
//! [`keep_hashes_in`] names a file (the data dir's `hashes.json`), the cache outlives the process,
//! as A1111's `cache.json` does.

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

/// The most hashes the cache file keeps (the oldest file's entries are not told apart; the file
/// is only rewritten whole).
const MAX_ENTRIES: usize = 10_000;
/// A cache file larger than this is ignored (and replaced on the next write).
const MAX_FILE_BYTES: u64 = 16 << 20;

#[derive(Default)]
struct Cache {
    hashes: HashMap<Key, String>,
    file: Option<PathBuf>,
}

/// One cached hash as the cache file stores it.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredHash {
    path: PathBuf,
    offset: u64,
    size: u64,
    /// Modification time in nanoseconds since the epoch, as a decimal string (beyond JSON's
    /// exact integers).
    modified_ns: String,
    sha256: String,
}

/// Hashes already computed (a file changed on disk gets a new size or time, so a new entry).
static CACHE: Mutex<Option<Cache>> = Mutex::new(None);

fn with_cache<T>(f: impl FnOnce(&mut Cache) -> T) -> T {
    f(CACHE.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(Cache::default))
}

/// Keeps the cache in `file` from now on: hashes recorded there are read (an unreadable or
/// oversized file is ignored, not an error), and every new hash is written back.
pub fn keep_hashes_in(file: PathBuf) {
    let stored: Vec<StoredHash> = std::fs::metadata(&file)
        .ok()
        .filter(|m| m.len() <= MAX_FILE_BYTES)
        .and_then(|_| std::fs::read(&file).ok())
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    with_cache(|cache| {
        for h in stored.into_iter().take(MAX_ENTRIES) {
            let valid = h.sha256.len() == 64 && h.sha256.bytes().all(|b| b.is_ascii_hexdigit());
            if let (true, Ok(modified)) = (valid, h.modified_ns.parse()) {
                cache.hashes.insert((h.path, h.offset, h.size, modified), h.sha256);
            }
        }
        cache.file = Some(file);
    });
}

fn key(path: &Path, offset: u64) -> Option<Key> {
    stamp(path).map(|(len, modified)| (path.to_path_buf(), offset, len, modified))
}

/// The hash of `path` from `offset` if it was computed before (this process or, with
/// [`keep_hashes_in`], an earlier one) and the file has not changed since; never reads the file.
pub fn known_sha256_from(path: &Path, offset: u64) -> Option<String> {
    let key = key(path, offset)?;
    with_cache(|cache| cache.hashes.get(&key).cloned())
}

/// [`sha256_from`], remembered (see [`keep_hashes_in`]).
pub fn cached_sha256_from(path: &Path, offset: u64) -> std::io::Result<String> {
    if let Some(hash) = known_sha256_from(path, offset) {
        return Ok(hash);
    }
    // The file's size and time before reading it: a file that changed while being hashed
    // (still being copied) is not remembered under its new stamp.
    let before = key(path, offset);
    let hash = sha256_from(path, offset)?;
    if let Some(key) = before.filter(|k| key(path, offset).as_ref() == Some(k)) {
        let write = with_cache(|cache| {
            if cache.hashes.len() >= MAX_ENTRIES {
                cache.hashes.clear();
            }
            cache.hashes.insert(key, hash.clone());
            let stored: Vec<StoredHash> = cache
                .hashes
                .iter()
                .map(|((path, offset, size, modified), sha256)| StoredHash {
                    path: path.clone(),
                    offset: *offset,
                    size: *size,
                    modified_ns: modified.to_string(),
                    sha256: sha256.clone(),
                })
                .collect();
            cache.file.clone().map(|file| (file, stored))
        });
        if let Some((file, stored)) = write {
            let written = serde_json::to_vec_pretty(&stored)
                .map_err(std::io::Error::other)
                .and_then(|json| crate::atomic_file::write_atomically(&file, &json));
            if let Err(e) = written {
                tracing::warn!(file = %file.display(), error = %e, "could not save the model hash cache; hashes will be computed again next time");
            }
        }
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

    #[test]
    fn hashes_are_kept_in_the_cache_file_and_read_back_and_a_damaged_file_is_ignored() {
        let dir = std::env::temp_dir().join(format!("easel-hash-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (data, store) = (dir.join("model.bin"), dir.join("hashes.json"));
        std::fs::write(&data, b"abc").unwrap();
        std::fs::write(&store, b"{not json").unwrap();
        keep_hashes_in(store.clone());
        assert_eq!(known_sha256_from(&data, 0), None);
        let hash = cached_sha256_from(&data, 0).unwrap();
        let saved: Vec<StoredHash> = serde_json::from_slice(&std::fs::read(&store).unwrap()).unwrap();
        let entry = saved.iter().find(|h| h.path == data).expect("the hash is in the file");
        assert_eq!(entry.sha256, hash);
        // Another process: a fresh cache reads the file; a lie in it is believed only for the
        // same size and time, which is what lets a restart skip hashing.
        with_cache(|cache| cache.hashes.clear());
        let mut lied: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(&store).unwrap()).unwrap();
        for h in &mut lied {
            h["sha256"] = serde_json::json!("0".repeat(64));
        }
        std::fs::write(&store, serde_json::to_vec(&lied).unwrap()).unwrap();
        keep_hashes_in(store.clone());
        assert_eq!(known_sha256_from(&data, 0), Some("0".repeat(64)));
        std::fs::write(&data, b"abcd").unwrap();
        assert_eq!(known_sha256_from(&data, 0), None, "a changed file is hashed again");
        with_cache(|cache| cache.file = None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
