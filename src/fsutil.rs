//! File writes that never leave a half-written file behind, and output
//! folders that never clobber what they did not make.

use anyhow::{bail, Context};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Make a file the safetensors serializer wrote readable by everyone, as
/// `File::create` makes files under the usual umask: the serializer creates
/// them owner-only, and a store, a model folder or an export is shared data
/// (a serving account, a colleague) like the JSON beside it.
pub fn share(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
}

/// Write `bytes` to `path` through a temporary file in the same folder, fsync it,
/// then rename it into place: readers see the old file or the new one, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(".{}.tmp.{}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        std::fs::create_dir_all(dir)?;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        std::fs::File::open(dir)?.sync_all()
    })();
    // Name the file: the caller's error then says which write failed.
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io::Error::new(e.kind(), format!("writing {}: {e}", path.display()))
    })
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

/// An advisory lock (flock) on a folder, held while this value lives; the
/// kernel drops it when the process dies, so a dead holder's lock is free.
pub struct FolderLock(#[allow(dead_code)] std::fs::File);

/// Take the lock file `name` of `dir` (created with the folder), or say who
/// holds it: the pid and host its holder wrote there.
pub fn lock_folder(dir: &Path, name: &str) -> anyhow::Result<FolderLock> {
    use std::os::fd::AsRawFd;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(name);
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        // A link in its place is refused: it could lead out of the folder.
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .with_context(|| format!("opening the lock {}", path.display()))?;
    // SAFETY: flock on a descriptor we own; released when the file closes.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let holder = std::fs::read_to_string(&path).unwrap_or_default();
        let holder = if holder.trim().is_empty() { "another process".to_string() } else { holder.trim().to_string() };
        bail!("{} is in use by {holder} (it holds {}): wait for it to end, or stop it", dir.display(), path.display());
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    f.set_len(0)?;
    write!(f, "`uorch` pid {} on {}", std::process::id(), host.trim())?;
    Ok(FolderLock(f))
}

/// Open `path` to append to it, creating it; a symbolic link there is
/// refused rather than followed (it may lead out of the folder).
pub fn append_to(path: &Path) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .with_context(|| format!("opening {} to append to it (a symbolic link there is refused)", path.display()))
}

/// Symbolic links inside `dir` (at any depth; links are not followed) that
/// lead out of it, each with where it leads: writing through one would
/// append to, or delete in, a folder the command was not given. A dangling
/// link counts by where it points.
pub fn links_leaving(dir: &Path) -> Vec<(PathBuf, PathBuf)> {
    let root = resolved(dir);
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let (path, Ok(kind)) = (e.path(), e.file_type()) else { continue };
            if kind.is_dir() {
                todo.push(path);
            } else if kind.is_symlink() {
                let target = std::fs::read_link(&path).map(|t| d.join(t)).unwrap_or_default();
                let lands = resolved(&std::path::absolute(&target).unwrap_or(target));
                if !lands.starts_with(&root) {
                    out.push((path, lands));
                }
            }
        }
    }
    out.sort();
    out
}

/// `p` as an absolute path with symlinks resolved as far as it exists.
fn resolved(p: &Path) -> PathBuf {
    if let Ok(c) = p.canonicalize() {
        return c;
    }
    match (p.parent().filter(|d| !d.as_os_str().is_empty()), p.file_name()) {
        (Some(dir), Some(name)) => resolved(dir).join(name),
        (None, Some(name)) => std::env::current_dir().unwrap_or_default().join(name),
        _ => std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()),
    }
}

/// Whether a command may write the output folder `out` (`flag` names its
/// option): never when it is, holds or lies inside one of `sources` (what
/// the command reads); and, without `force`, not when it exists and is a
/// file, or a folder that is neither empty nor `made_by_us` (a previous
/// output of the same command, which it may replace).
pub fn check_output_dir(
    out: &Path,
    flag: &str,
    sources: &[&Path],
    force: bool,
    made_by_us: impl Fn(&Path) -> bool,
) -> anyhow::Result<()> {
    let o = resolved(out);
    for src in sources {
        let s = resolved(src);
        let how = if o == s {
            "is"
        } else if s.starts_with(&o) {
            "holds"
        } else if o.starts_with(&s) {
            "lies inside"
        } else {
            continue;
        };
        bail!("{flag} {} {how} {}, which this command reads: choose another {flag}", out.display(), src.display());
    }
    if force {
        return Ok(());
    }
    let meta = match std::fs::symlink_metadata(out) {
        Ok(m) => m,
        Err(_) => return Ok(()),
    };
    if !meta.is_dir() {
        bail!(
            "{flag} {} exists and is not a folder: pass --force to replace it, or choose another {flag}",
            out.display()
        );
    }
    let empty = std::fs::read_dir(out).with_context(|| format!("reading {}", out.display()))?.next().is_none();
    if !empty && !made_by_us(out) {
        bail!(
            "{flag} {} exists and holds files this command did not write: pass --force to replace it, or choose another {flag}",
            out.display()
        );
    }
    Ok(())
}

/// [`check_output_dir`] for a command whose output is worth keeping (a
/// store, an imported model): even its own earlier output (`made_by_us`) is
/// replaced only with `force`; an empty folder is fine.
pub fn check_precious_output(
    out: &Path,
    sources: &[&Path],
    force: bool,
    made_by_us: impl Fn(&Path) -> bool,
) -> anyhow::Result<()> {
    check_output_dir(out, "--out", sources, force, &made_by_us)?;
    let holds_files = std::fs::read_dir(out).map(|mut d| d.next().is_some()).unwrap_or(false);
    if !force && holds_files {
        bail!("{} already exists: pass --force to replace it, or choose another --out", out.display());
    }
    Ok(())
}

/// Put the finished folder `tmp` at `out`: an existing `out` is moved aside
/// first and removed only once `tmp` is in place.
pub fn replace_dir(tmp: &Path, out: &Path) -> anyhow::Result<()> {
    let old = out.with_file_name(format!(
        ".{}.old-{}",
        out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        std::process::id()
    ));
    let had = std::fs::symlink_metadata(out).is_ok();
    if had {
        std::fs::rename(out, &old).with_context(|| format!("moving {} aside to {}", out.display(), old.display()))?;
    }
    if let Err(e) = std::fs::rename(tmp, out) {
        if had {
            let _ = std::fs::rename(&old, out);
        }
        return Err(e).with_context(|| format!("renaming {} to {}", tmp.display(), out.display()));
    }
    if had {
        let removed = if std::fs::symlink_metadata(&old).map(|m| m.is_dir()).unwrap_or(false) {
            std::fs::remove_dir_all(&old)
        } else {
            std::fs::remove_file(&old)
        };
        removed.with_context(|| format!("removing the replaced {}", old.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_folder_never_overlaps_what_is_read_and_never_clobbers_a_stranger() {
        let d = tempfile::tempdir().unwrap();
        let run = d.path().join("run");
        std::fs::create_dir_all(run.join("checkpoints")).unwrap();
        let ours = |p: &Path| p.join("integration.json").exists();
        let check = |out: &Path, force| check_output_dir(out, "--out", &[&run], force, ours);
        for (out, how) in [(run.clone(), "is"), (d.path().to_path_buf(), "holds"), (run.join("x"), "lies inside")] {
            let e = check(&out, true).unwrap_err().to_string();
            assert!(e.contains(&format!(" {how} ")) && e.contains("choose another --out"), "{e}");
        }
        // Through a symlink to the run folder, too.
        std::os::unix::fs::symlink(&run, d.path().join("link")).unwrap();
        assert!(check(&d.path().join("link"), true).is_err());

        let other = d.path().join("other");
        std::fs::create_dir(&other).unwrap();
        check(&other, false).unwrap(); // empty
        std::fs::write(other.join("notes.txt"), "mine").unwrap();
        let e = check(&other, false).unwrap_err().to_string();
        assert!(e.contains("holds files this command did not write: pass --force"), "{e}");
        check(&other, true).unwrap();
        std::fs::write(other.join("integration.json"), "{}").unwrap();
        check(&other, false).unwrap(); // a previous export
        check(&d.path().join("new"), false).unwrap();
        std::fs::write(d.path().join("file"), "x").unwrap();
        assert!(check(&d.path().join("file"), false).unwrap_err().to_string().contains("is not a folder"));
    }

    #[test]
    fn a_locked_folder_names_its_holder_and_frees_when_the_holder_goes() {
        let d = tempfile::tempdir().unwrap();
        let held = lock_folder(d.path(), ".lock").unwrap();
        // flock locks belong to the open file: a second open conflicts, in this process too.
        let e = lock_folder(d.path(), ".lock").err().unwrap().to_string();
        assert!(e.contains(&format!("in use by `uorch` pid {}", std::process::id())), "{e}");
        drop(held);
        lock_folder(d.path(), ".lock").unwrap();
    }

    #[test]
    fn replacing_a_folder_keeps_the_old_one_until_the_new_one_is_in_place() {
        let d = tempfile::tempdir().unwrap();
        let (tmp, out) = (d.path().join(".out.tmp"), d.path().join("out"));
        std::fs::create_dir(&tmp).unwrap();
        std::fs::write(tmp.join("a"), "new").unwrap();
        // Nothing to rename: the old one stays whole.
        assert!(replace_dir(&d.path().join("missing"), &out).is_err());
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("a"), "old").unwrap();
        assert!(replace_dir(&d.path().join("missing"), &out).is_err());
        assert_eq!(std::fs::read_to_string(out.join("a")).unwrap(), "old");
        replace_dir(&tmp, &out).unwrap();
        assert_eq!(std::fs::read_to_string(out.join("a")).unwrap(), "new");
        let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("out")]);
    }

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

    #[test]
    fn links_that_lead_out_of_a_folder_are_found_at_any_depth_and_links_inside_are_not() {
        use std::os::unix::fs::symlink;
        let d = tempfile::tempdir().unwrap();
        let run = d.path().join("run");
        std::fs::create_dir_all(run.join("a/b")).unwrap();
        std::fs::create_dir_all(d.path().join("out")).unwrap();
        symlink("b", run.join("a/inside")).unwrap();
        symlink(run.join("a/b"), run.join("absolute-inside")).unwrap();
        symlink("../../out", run.join("a/up")).unwrap();
        symlink(d.path().join("out"), run.join("a/b/deep")).unwrap();
        symlink("/nonexistent/x", run.join("dangling")).unwrap();
        let found: Vec<PathBuf> = links_leaving(&run).into_iter().map(|(l, _)| l).collect();
        assert_eq!(found, vec![run.join("a/b/deep"), run.join("a/up"), run.join("dangling")]);
        // The folder itself reached through a link is no escape.
        symlink(&run, d.path().join("via")).unwrap();
        assert_eq!(links_leaving(&d.path().join("via")).len(), 3);
        // Appending refuses a link.
        let e = append_to(&run.join("a/inside")).unwrap_err();
        assert!(format!("{e:#}").contains("a symbolic link there is refused"), "{e:#}");
    }
}
