//! Raft storage on redb: the log store and the state machine.
//!
//! # Layout
//!
//! One redb database per node holds three tables:
//!
//! - `log`: log index → the JSON-encoded entry;
//! - `meta`: `vote`, `committed` and `purged` → the JSON-encoded vote or log id;
//! - `snapshot`: `meta` and `data` → the current snapshot's metadata (JSON) and bytes.
//!
//! # Durability
//!
//! Every write that Raft safety depends on commits with [`redb::Durability::Immediate`] before
//! openraft hears of it: [`LogStore`] returns from `save_vote` only after the vote's transaction
//! committed, and calls the `IOFlushed` callback of `append` only after the entries' transaction
//! committed. Truncation, purging and snapshots are committed the same way. The committed log id
//! is written with [`redb::Durability::None`]: it is a lower bound that only shortens recovery,
//! so losing its latest value in a crash is safe, and the next durable commit persists it.
//!
//! The state machine itself lives in memory. On start, openraft installs the persisted snapshot
//! and re-applies the log from the snapshot up to the persisted committed log id, so a restart
//! costs one snapshot load plus the log written since that snapshot.
//!
//! # Modes
//!
//! [`Storage::open`] keeps the database in `redb.db` of a data directory, beside the identity
//! file ([`crate::identity`]). [`Storage::in_memory`] uses redb's in-memory backend: the same
//! code paths, gone when the last handle drops. Cloning a [`Storage`] shares the database, so a
//! test can stop a node and start it again on the same in-memory storage.

mod log;
mod sm;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};

pub use self::log::LogStore;
pub use self::sm::{KvView, SnapshotBuilder, StateMachine};
use crate::identity::{Identity, IdentityError, IDENTITY_FILE};
use crate::types::NodeId;

/// The database file name inside a data directory.
pub const DB_FILE: &str = "redb.db";

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");

const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_PURGED: &str = "purged";
const KEY_SNAPSHOT_META: &str = "meta";
const KEY_SNAPSHOT_DATA: &str = "data";

/// Why storage could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The identity file could not be read or written.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The directory has an identity but no database: the node's data was lost, so it must not
    /// run under the recorded identity. Remove the whole directory to rejoin as a new member.
    #[error("data directory {0} has an identity file but no database; refusing to start")]
    MissingData(PathBuf),
    /// Another handle in this process or another process holds the database open.
    #[error("database {0} is open elsewhere")]
    Locked(PathBuf),
    /// redb failed.
    #[error("redb: {0}")]
    Db(#[from] redb::Error),
    /// I/O failed creating the directory.
    #[error("data directory {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A stored record could not be decoded.
    #[error("stored record: {0}")]
    Decode(io::Error),
}

/// A node's storage: its identity and its redb database.
#[derive(Clone)]
pub struct Storage {
    db: Arc<Database>,
    identity: Identity,
    dir: Option<PathBuf>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("identity", &self.identity)
            .field("dir", &self.dir)
            .finish()
    }
}

impl Storage {
    /// Opens (or creates) the durable storage of node `id` in `dir`.
    ///
    /// # Errors
    ///
    /// See [`StoreError`]; in particular [`StoreError::MissingData`] when the directory records
    /// an identity but its database is gone, and [`StoreError::Locked`] while another handle holds
    /// the database.
    pub fn open(dir: &Path, id: NodeId) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let db_path = dir.join(DB_FILE);
        if dir.join(IDENTITY_FILE).exists() && !db_path.exists() {
            return Err(StoreError::MissingData(dir.to_owned()));
        }
        // The database is created before the identity: a crash between the two leaves a
        // database without identity, which draws a new incarnation on the next start (safe).
        let db = match Database::create(&db_path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(StoreError::Locked(db_path));
            }
            Err(e) => return Err(StoreError::Db(e.into())),
        };
        let identity = Identity::load_or_create(dir, id)?;
        Self::with_db(db, identity, Some(dir.to_owned()))
    }

    /// Creates storage for node `id` on redb's in-memory backend with a fresh incarnation.
    ///
    /// # Errors
    ///
    /// When the random source or redb fails.
    pub fn in_memory(id: NodeId) -> Result<Self, StoreError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|e| StoreError::Db(e.into()))?;
        Self::with_db(db, Identity::fresh(id)?, None)
    }

    fn with_db(db: Database, identity: Identity, dir: Option<PathBuf>) -> Result<Self, StoreError> {
        let txn = db.begin_write().map_err(redb::Error::from)?;
        txn.open_table(LOG).map_err(redb::Error::from)?;
        txn.open_table(META).map_err(redb::Error::from)?;
        txn.open_table(SNAPSHOT).map_err(redb::Error::from)?;
        txn.commit().map_err(redb::Error::from)?;
        Ok(Self {
            db: Arc::new(db),
            identity,
            dir,
        })
    }

    /// The node's identity.
    pub fn identity(&self) -> Identity {
        self.identity
    }

    /// The data directory, or `None` for in-memory storage.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// A log store over this database.
    pub fn log_store(&self) -> LogStore {
        LogStore::new(self.db.clone())
    }

    /// A state machine over this database, holding the persisted snapshot (if any) for openraft
    /// to install on start.
    ///
    /// # Errors
    ///
    /// When the persisted snapshot cannot be read or decoded.
    pub fn state_machine(&self) -> Result<StateMachine, StoreError> {
        StateMachine::load(self.db.clone())
    }
}

/// Maps a redb error into the `io::Error` openraft's storage traits use.
fn io_err(e: impl Into<redb::Error>) -> io::Error {
    io::Error::other(e.into())
}

/// Maps a decoding error into an `io::Error` of kind `InvalidData`.
fn decode_err(e: serde_json::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Runs `f` in a write transaction committed with `durability`, on the blocking thread pool.
async fn write<F>(db: &Arc<Database>, durability: Durability, f: F) -> io::Result<()>
where
    F: FnOnce(&WriteTransaction) -> Result<(), redb::Error> + Send + 'static,
{
    let db = db.clone();
    tokio::task::spawn_blocking(move || {
        let mut txn = db.begin_write().map_err(io_err)?;
        txn.set_durability(durability).map_err(io::Error::other)?;
        f(&txn).map_err(io_err)?;
        txn.commit().map_err(io_err)
    })
    .await
    .map_err(io::Error::other)?
}

/// Reads one `meta` record.
fn read_meta<T: serde::de::DeserializeOwned>(db: &Database, key: &str) -> io::Result<Option<T>> {
    let txn = db.begin_read().map_err(io_err)?;
    let table = txn.open_table(META).map_err(io_err)?;
    let found = match table.get(key).map_err(io_err)? {
        Some(v) => Some(serde_json::from_slice(v.value()).map_err(decode_err)?),
        None => None,
    };
    Ok(found)
}
