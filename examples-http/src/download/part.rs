//! The `.part` file: locked while a download owns it, with the validator
//! that says which version of the resource its bytes belong to.
//!
//! **The lock.** `flock(LOCK_EX | LOCK_NB)` on the `.part` itself: a second
//! process (or a second call in this one: `flock` locks belong to the open
//! file, not the process) for the same destination fails at once with
//! [`DownloadError::Busy`] instead of appending to the same file. The lock
//! goes away with the file descriptor, so a crash or a dropped future can
//! never leave it held. One trap: between our `open` and our `flock`, the
//! holder may finish and rename the `.part` into place (or remove it), and
//! we would then hold a lock on a file that no longer has the name. So after
//! locking we check that the path still names the inode we locked.
//!
//! **The validator.** `DEST.part.validator` holds the `If-Range` value (a
//! strong `ETag`, else `Last-Modified`) and the full length the first
//! response announced. It is written after the `.part` is truncated and
//! before any byte is appended, so every byte in the `.part` belongs to the
//! version it names. A `.part` without one (a crash before it was written, a
//! server that sends no validator) is never resumed: nothing would tell a
//! changed resource from the one we started.
//!
//! These are a few metadata syscalls on a local file, made synchronously:
//! through `spawn_blocking`, a dropped future would leave them running
//! behind the caller's back, and the lock's state would be a race.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{DownloadError, io_err};

/// What the `.part`'s bytes belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Validator {
    /// The value for `If-Range`: a strong ETag (quotes included) or an HTTP-date.
    pub if_range: String,
    /// The full length announced by the response that started the `.part`.
    pub total: Option<u64>,
}

/// An open, locked `.part` file.
#[derive(Debug)]
pub(super) struct Part {
    file: File,
    path: PathBuf,
    validator_path: PathBuf,
}

/// `DEST.part.validator`.
pub(super) fn validator_path(part: &Path) -> PathBuf {
    let mut name = part.file_name().unwrap_or_default().to_os_string();
    name.push(".validator");
    part.with_file_name(name)
}

/// True when `path` still names the file `ours` describes (same device and
/// inode): it was not renamed, removed or replaced since we opened it.
fn still_at(path: &Path, ours: &std::fs::Metadata) -> bool {
    std::fs::symlink_metadata(path)
        .is_ok_and(|now| now.dev() == ours.dev() && now.ino() == ours.ino())
}

impl Part {
    /// Opens (creating it empty) and locks `path`, or fails at once with
    /// [`DownloadError::Busy`] when another download holds it.
    pub(super) fn lock(path: &Path) -> Result<Self, DownloadError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            // A symlink planted at DEST.part must not redirect our writes.
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(io_err(format!("open {}", path.display())))?;
        // SAFETY: flock(2) on a descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(DownloadError::Busy(path.to_path_buf()));
            }
            return Err(io_err(format!("lock {}", path.display()))(err));
        }
        let ours = file
            .metadata()
            .map_err(io_err(format!("stat {}", path.display())))?;
        if !ours.is_file() {
            return Err(DownloadError::NotRegular(path.to_path_buf()));
        }
        // The holder may have renamed or removed the file between our open
        // and our lock: then the lock we hold protects nothing.
        if !still_at(path, &ours) {
            return Err(DownloadError::Busy(path.to_path_buf()));
        }
        Ok(Self {
            file,
            path: path.to_path_buf(),
            validator_path: validator_path(path),
        })
    }

    /// The `.part`'s path.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes in the `.part` now.
    pub(super) fn len(&self) -> Result<u64, DownloadError> {
        self.file
            .metadata()
            .map(|m| m.len())
            .map_err(io_err(format!("stat {}", self.path.display())))
    }

    /// The saved validator, if there is a complete one.
    pub(super) fn validator(&self) -> Option<Validator> {
        let text = std::fs::read_to_string(&self.validator_path).ok()?;
        let mut if_range = None;
        let mut total = None;
        let mut complete = false;
        for line in text.lines() {
            match line.split_once(": ") {
                Some(("if-range", value)) => if_range = Some(value.to_owned()),
                Some(("length", value)) => total = Some(value.parse().ok()?),
                // Written last: a file cut short by a crash has no "end".
                _ if line == "end" => complete = true,
                _ => return None,
            }
        }
        complete.then_some(Validator {
            if_range: if_range?,
            total,
        })
    }

    /// Empties the `.part` and records what the bytes about to be appended
    /// belong to (`None`: nothing, the `.part` will not be resumable).
    pub(super) fn restart(&mut self, validator: Option<&Validator>) -> Result<(), DownloadError> {
        self.forget_validator()?;
        let context = || format!("truncate {}", self.path.display());
        self.file.set_len(0).map_err(io_err(context()))?;
        // Durable before the new validator is: never old bytes under a new name.
        self.file.sync_all().map_err(io_err(context()))?;
        let Some(validator) = validator else {
            return Ok(());
        };
        let mut text = format!("if-range: {}\n", validator.if_range);
        if let Some(total) = validator.total {
            text.push_str(&format!("length: {total}\n"));
        }
        text.push_str("end\n");
        let context = format!("write {}", self.validator_path.display());
        let mut file = File::create(&self.validator_path).map_err(io_err(context.clone()))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io_err(context))
    }

    fn forget_validator(&self) -> Result<(), DownloadError> {
        match std::fs::remove_file(&self.validator_path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(io_err(format!(
                "remove {}",
                self.validator_path.display()
            ))(err)),
            _ => Ok(()),
        }
    }

    /// A tokio handle on the same open file, positioned at `offset`.
    /// It shares the lock: the lock lasts until both are closed.
    pub(super) fn writer_at(&mut self, offset: u64) -> Result<tokio::fs::File, DownloadError> {
        let context = || format!("open {}", self.path.display());
        self.file
            .seek(SeekFrom::Start(offset))
            .map_err(io_err(context()))?;
        let clone = self.file.try_clone().map_err(io_err(context()))?;
        Ok(tokio::fs::File::from_std(clone))
    }

    /// Removes the `.part` and its validator, still under the lock: its
    /// content cannot be trusted (a checksum mismatch, a body longer than
    /// announced) or is empty.
    pub(super) fn discard(self) {
        // Best effort: a `.part` that cannot be removed is reported by the
        // next attempt (which truncates it, having no validator).
        let _ = self.forget_validator();
        let _ = std::fs::remove_file(&self.path);
    }

    /// Renames the `.part` to `dest` (the lock is held until after) and
    /// removes the validator.
    pub(super) fn commit(self, dest: &Path) -> Result<(), DownloadError> {
        std::fs::rename(&self.path, dest).map_err(io_err(format!(
            "rename {} to {}",
            self.path.display(),
            dest.display()
        )))?;
        // A leftover validator without a `.part` is harmless: the next
        // download truncates and rewrites both.
        let _ = self.forget_validator();
        Ok(())
    }
}

// Equivalent mutant (cargo mutants on this file):
// - `LOCK_EX | LOCK_NB` -> `LOCK_EX ^ LOCK_NB`: the two flags are distinct
//   bits, so `|` and `^` give the same value.
#[cfg(test)]
mod tests {
    use super::*;

    fn locked(dir: &tempfile::TempDir) -> Part {
        Part::lock(&dir.path().join("f.part")).unwrap()
    }

    #[test]
    fn a_lock_protects_only_the_file_still_at_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.part");
        let part = locked(&dir);
        let ours = part.file.metadata().unwrap();
        assert!(still_at(&path, &ours));
        // Replaced by another file on the same device: same dev, new inode.
        std::fs::rename(&path, dir.path().join("moved")).unwrap();
        assert!(!still_at(&path, &ours), "gone");
        std::fs::write(&path, b"other").unwrap();
        assert!(!still_at(&path, &ours), "another file");
        // The lock is held: a second one is refused while the first lives.
        let other = dir.path().join("moved");
        assert!(matches!(Part::lock(&other), Err(DownloadError::Busy(_))));
        drop(part);
        assert!(Part::lock(&other).is_ok(), "released with the descriptor");
    }

    fn validator_text(dir: &tempfile::TempDir, text: &str) -> Option<Validator> {
        let part = locked(dir);
        std::fs::write(&part.validator_path, text).unwrap();
        part.validator()
    }

    #[test]
    fn a_validator_file_is_trusted_only_when_whole_and_well_formed() {
        let dir = tempfile::tempdir().unwrap();
        let whole = Validator {
            if_range: "\"v1\"".into(),
            total: Some(9),
        };
        assert_eq!(
            validator_text(&dir, "if-range: \"v1\"\nlength: 9\nend\n"),
            Some(whole)
        );
        assert_eq!(
            validator_text(&dir, "if-range: \"v1\"\nend\n").map(|v| v.total),
            Some(None),
            "the length is optional"
        );
        for bad in [
            "if-range: \"v1\"\nlength: 9\n",         // cut before "end"
            "if-range: \"v1\"\ngarbage\nend\n",      // an unknown line
            "if-range: \"v1\"\nlength: nine\nend\n", // a bad length
            "length: 9\nend\n",                      // no validator
            "",
        ] {
            assert_eq!(validator_text(&dir, bad), None, "{bad:?}");
        }
    }

    #[test]
    fn restart_forgets_the_old_validator_and_saves_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut part = locked(&dir);
        let v = Validator {
            if_range: "Sun, 06 Nov 1994 08:49:37 GMT".into(),
            total: None,
        };
        std::fs::write(&part.path, b"old bytes").unwrap();
        part.restart(Some(&v)).unwrap();
        assert_eq!(part.len().unwrap(), 0, "truncated");
        assert_eq!(part.validator(), Some(v));
        part.restart(None).unwrap();
        assert_eq!(
            part.validator(),
            None,
            "no validator: these bytes are nobody's"
        );
        assert!(!part.validator_path.exists());
        // A validator path that cannot be removed is an error, not ignored.
        std::fs::create_dir(&part.validator_path).unwrap();
        assert!(matches!(part.restart(None), Err(DownloadError::Io { .. })));
    }

    #[test]
    fn commit_renames_and_removes_the_validator_discard_removes_both() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f");
        let mut part = locked(&dir);
        let v = Validator {
            if_range: "\"v\"".into(),
            total: Some(3),
        };
        part.restart(Some(&v)).unwrap();
        std::fs::write(&part.path, b"abc").unwrap();
        let validator_path = part.validator_path.clone();
        part.commit(&dest).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"abc");
        assert!(!validator_path.exists());
        let mut part = locked(&dir);
        part.restart(Some(&v)).unwrap();
        let (path, validator_path) = (part.path.clone(), part.validator_path.clone());
        part.discard();
        assert!(!path.exists() && !validator_path.exists());
    }
}
