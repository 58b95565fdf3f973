//! Files written so a reader sees either nothing or the whole file (temp file, fsync, rename),
//! and the clean-up of temp files a crash left behind. Used for images and for `models.json`.

use std::io::Write;
use std::path::Path;

/// Suffix of a file still being written; never a finished file's name.
pub const TEMP_SUFFIX: &str = ".part";

/// Writes `bytes` to `path` so that a reader sees either nothing or the whole file: temp file,
/// fsync, rename over any old file, fsync the folder (and its parent when the folder is new).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    if !dir.exists() {
        std::fs::create_dir_all(dir)?;
        // A new folder (an outputs day) survives a crash only once its parent's entry is synced.
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::File::open(parent)?.sync_all()?;
        }
    }
    let mut temp_name = path.file_name().unwrap_or_default().to_os_string();
    temp_name.push(TEMP_SUFFIX);
    let temp = dir.join(temp_name);
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Removes `*.part` files a crash left under the outputs dir; returns how many.
pub fn remove_leftover_temp_files(outputs_dir: &Path) -> usize {
    let Ok(days) = std::fs::read_dir(outputs_dir) else { return 0 };
    let mut removed = 0;
    for day in days.filter_map(Result::ok).filter(|d| d.path().is_dir()) {
        let Ok(files) = std::fs::read_dir(day.path()) else { continue };
        for file in files.filter_map(Result::ok) {
            if file.file_name().to_string_lossy().ends_with(TEMP_SUFFIX) && std::fs::remove_file(file.path()).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = std::env::temp_dir().join(format!("easel-atomic-{}", std::process::id()));
        let path = dir.join("2026-01-01/a.png");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        std::fs::write(dir.join("2026-01-01/b.png.part"), b"x").unwrap();
        assert_eq!(remove_leftover_temp_files(&dir), 1);
        assert!(path.exists());
    }
}
