//! File writes that never leave a half-written file behind.

use std::io::{self, Write};
use std::path::Path;

/// Write `bytes` to `path` through a temporary file in the same folder, fsync it,
/// then rename it into place: readers see the old file or the new one, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(".{}.tmp.{}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The first `digits` hex digits of the SHA-256 of a JSON value's text: a
/// short, stable name for a configuration (checkpoint compatibility, shared
/// stage names).
pub fn config_digest(key: &serde_json::Value, digits: usize) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(key.to_string().as_bytes()))[..digits].to_string()
}

/// The value kept at `path` by [`write_cached`] under `key`; `None` for
/// another key, no file, or one that does not parse.
pub fn read_cached<T: serde::de::DeserializeOwned>(path: &Path, key: &str) -> Option<T> {
    let kept = std::fs::read(path).ok().and_then(|b| serde_json::from_slice::<(String, T)>(&b).ok());
    kept.filter(|(k, _)| k == key).map(|(_, v)| v)
}

/// Keep `value` at `path` as JSON with `key` (atomically), for [`read_cached`].
pub fn write_cached<T: serde::Serialize>(path: &Path, key: &str, value: &T) -> anyhow::Result<()> {
    write_atomic(path, &serde_json::to_vec_pretty(&(key, value))?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_whole_file_and_leaves_no_temporaries() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub").join("f.txt");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("f.txt")]);
    }

    #[test]
    fn a_cached_value_reads_back_under_its_key_only() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("cache.json");
        assert_eq!(read_cached::<u32>(&p, "a"), None, "no file");
        write_cached(&p, "a", &1u32).unwrap();
        assert_eq!(read_cached::<u32>(&p, "a"), Some(1), "same key");
        assert_eq!(read_cached::<u32>(&p, "b"), None, "another key");
        write_cached(&p, "b", &3u32).unwrap();
        assert_eq!((read_cached::<u32>(&p, "a"), read_cached::<u32>(&p, "b")), (None, Some(3)), "replaced");
        std::fs::write(&p, b"not json").unwrap();
        assert_eq!(read_cached::<u32>(&p, "b"), None, "a broken file");
    }
}
