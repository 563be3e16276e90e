//! A node's identity: its id and the incarnation of its data directory.
//!
//! A durable data directory holds `identity.json`, written once when the directory is first used
//! (to a temporary file, fsynced, renamed, and the directory fsynced) and read on every later
//! start. Opening a directory with a different node id than the one recorded is an error, so a
//! directory cannot be reused under another identity by accident.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::types::{Incarnation, NodeId};

/// The file name of the identity record inside a data directory.
pub const IDENTITY_FILE: &str = "identity.json";

/// Largest identity file accepted (the real one is under 100 bytes).
const MAX_IDENTITY_FILE: u64 = 4096;

/// Who a node is: the id it has in the membership and the incarnation of its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The node id.
    pub id: NodeId,
    /// The incarnation of the node's data directory.
    pub incarnation: Incarnation,
}

/// Why an identity could not be loaded or created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// Reading or writing the identity file failed.
    #[error("identity file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The identity file is not a valid record.
    #[error("identity file {path} is malformed: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The directory belongs to another node id.
    #[error("data directory belongs to node {recorded}, not {requested}")]
    WrongNode {
        /// The id in the file.
        recorded: NodeId,
        /// The id asked for.
        requested: NodeId,
    },
    /// The operating system's random source failed.
    #[error("drawing an incarnation: {0}")]
    Random(getrandom::Error),
}

impl Identity {
    /// A new identity with a freshly drawn incarnation, recorded nowhere (in-memory nodes).
    ///
    /// # Errors
    ///
    /// [`IdentityError::Random`] when the random source fails.
    pub fn fresh(id: NodeId) -> Result<Self, IdentityError> {
        let incarnation = Incarnation::random().map_err(IdentityError::Random)?;
        Ok(Self { id, incarnation })
    }

    /// Reads the identity recorded in `dir`, or records a fresh one for `id` if there is none.
    ///
    /// # Errors
    ///
    /// I/O errors, a malformed file, or a file recording another node id.
    pub fn load_or_create(dir: &Path, id: NodeId) -> Result<Self, IdentityError> {
        let path = dir.join(IDENTITY_FILE);
        let io_err = |source| IdentityError::Io {
            path: path.clone(),
            source,
        };
        match fs::metadata(&path) {
            Ok(meta) => {
                if meta.len() > MAX_IDENTITY_FILE {
                    return Err(IdentityError::Malformed {
                        path,
                        reason: format!("{} bytes", meta.len()),
                    });
                }
                let text = fs::read(&path).map_err(io_err)?;
                let found: Identity =
                    serde_json::from_slice(&text).map_err(|e| IdentityError::Malformed {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                if found.id != id {
                    return Err(IdentityError::WrongNode {
                        recorded: found.id,
                        requested: id,
                    });
                }
                Ok(found)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let identity = Self::fresh(id)?;
                write_synced(dir, &path, &identity).map_err(io_err)?;
                Ok(identity)
            }
            Err(e) => Err(io_err(e)),
        }
    }
}

/// Writes `identity` to `path` through a synced temporary file and a synced directory.
fn write_synced(dir: &Path, path: &Path, identity: &Identity) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{IDENTITY_FILE}.tmp"));
    let bytes = serde_json::to_vec(identity).map_err(io::Error::other)?;
    let mut file = fs::File::create(&tmp)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_created_once_and_reread() {
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::load_or_create(dir.path(), 7).unwrap();
        let again = Identity::load_or_create(dir.path(), 7).unwrap();
        assert_eq!(first, again);
        assert_eq!(first.id, 7);
    }

    #[test]
    fn a_directory_refuses_another_node_id() {
        let dir = tempfile::tempdir().unwrap();
        Identity::load_or_create(dir.path(), 1).unwrap();
        let err = Identity::load_or_create(dir.path(), 2).unwrap_err();
        assert!(matches!(
            err,
            IdentityError::WrongNode {
                recorded: 1,
                requested: 2
            }
        ));
    }

    #[test]
    fn a_wiped_directory_gets_a_new_incarnation() {
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::load_or_create(dir.path(), 3).unwrap();
        fs::remove_file(dir.path().join(IDENTITY_FILE)).unwrap();
        let second = Identity::load_or_create(dir.path(), 3).unwrap();
        assert_ne!(first.incarnation, second.incarnation);
    }

    #[test]
    fn a_malformed_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(IDENTITY_FILE), b"{not json").unwrap();
        assert!(matches!(
            Identity::load_or_create(dir.path(), 3),
            Err(IdentityError::Malformed { .. })
        ));
    }
}
