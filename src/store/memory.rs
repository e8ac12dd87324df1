//! Per-watch memory in `watches/NAME.json`: what a watch must not forget
//! across a restart (arming, bad revisions, cooldown, a rollback in
//! progress). Written atomically (temporary file, fsync, rename); a file
//! that cannot be read is moved aside and reported, never a crash loop.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

pub const DIR: &str = "watches";

#[derive(Debug, Clone)]
pub struct MemoryStore {
    dir: PathBuf,
}

/// What loading found.
#[derive(Debug)]
pub enum Loaded<T> {
    Found(T),
    Missing,
    /// Unreadable; moved aside to `moved_to`.
    Corrupt {
        problem: String,
        moved_to: PathBuf,
    },
}

impl MemoryStore {
    pub fn open(state_dir: &Path) -> std::io::Result<Self> {
        let dir = state_dir.join(DIR);
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        // Watch names are validated to [A-Za-z0-9._-], starting alphanumeric.
        self.dir.join(format!("{name}.json"))
    }

    pub fn load<T: DeserializeOwned>(&self, name: &str) -> std::io::Result<Loaded<T>> {
        let path = self.path(name);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::Missing),
            Err(e) => return Err(e),
        };
        match serde_json::from_slice(&bytes) {
            Ok(v) => Ok(Loaded::Found(v)),
            Err(e) => {
                let stamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let moved_to = path.with_extension(format!("json.corrupt-{stamp}"));
                std::fs::rename(&path, &moved_to)?;
                Ok(Loaded::Corrupt {
                    problem: e.to_string(),
                    moved_to,
                })
            }
        }
    }

    pub fn save<T: Serialize>(&self, name: &str, value: &T) -> std::io::Result<()> {
        let path = self.path(name);
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        // The rename itself is durable only once the directory is synced.
        std::fs::File::open(&self.dir)?.sync_all()
    }

    pub fn remove(&self, name: &str) -> std::io::Result<()> {
        match std::fs::remove_file(self.path(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_and_survives_a_corrupt_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = MemoryStore::open(dir.path()).unwrap();
        assert!(matches!(
            store.load::<Vec<u32>>("a").unwrap(),
            Loaded::Missing
        ));
        store.save("a", &vec![1u32, 2]).unwrap();
        assert!(matches!(store.load::<Vec<u32>>("a").unwrap(), Loaded::Found(v) if v == [1, 2]));
        std::fs::write(dir.path().join("watches/a.json"), "{ truncated").unwrap();
        match store.load::<Vec<u32>>("a").unwrap() {
            Loaded::Corrupt { moved_to, .. } => assert!(moved_to.exists()),
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(store.load::<Vec<u32>>("a").unwrap(), Loaded::Missing),
            "moved aside"
        );
    }
}
