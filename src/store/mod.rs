//! The state directory: created on start and held under an exclusive lock so
//! that two daemons never act on the same state (and so on the same targets).
//! It holds the journal ([`journal`]), each watch's memory ([`memory`]) and
//! the firing alerts.

pub mod journal;
pub mod memory;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the state directory {}: {error}", path.display())]
    Create {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot open the lock file {}: {error}", path.display())]
    Lock {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "the state directory {} is locked by another rollbackd{}; two daemons must not share a state directory",
        path.display(),
        holder.as_deref().map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Locked {
        path: PathBuf,
        holder: Option<String>,
    },
}

/// The open, locked state directory. The lock lasts as long as this value
/// (and is released by the kernel if the process dies, even by `kill -9`).
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    _lock: File,
}

impl StateDir {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if !path.exists() {
            use std::os::unix::fs::DirBuilderExt;
            // Created private from the start: it will hold incident details.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .map_err(|error| StoreError::Create {
                    path: path.to_path_buf(),
                    error,
                })?;
        } else if let Ok(meta) = std::fs::metadata(path) {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "the state directory is readable by other users; chmod 700 it");
            }
        }
        let lock_path = path.join("lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|error| StoreError::Lock {
                path: lock_path.clone(),
                error,
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(StoreError::Locked {
                    path: path.to_path_buf(),
                    holder: (!holder.is_empty()).then(|| holder.to_owned()),
                });
            }
            Err(std::fs::TryLockError::Error(error)) => {
                return Err(StoreError::Lock {
                    path: lock_path,
                    error,
                });
            }
        }
        // The pid is only informational (for the message above).
        let _ = file.set_len(0);
        let _ = file.seek(SeekFrom::Start(0));
        let _ = writeln!(file, "{}", std::process::id());
        Ok(Self {
            path: path.to_path_buf(),
            _lock: file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_open_of_the_same_directory_is_refused_with_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let first = StateDir::open(&state).unwrap();
        let err = StateDir::open(&state).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("locked by another rollbackd"), "{msg}");
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        drop(first);
        StateDir::open(&state).unwrap();
    }
}
