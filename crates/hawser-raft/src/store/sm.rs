//! The key-value state machine and its snapshots.
//!
//! The state machine is a `BTreeMap<String, String>` in memory with its last applied log id and
//! membership. A snapshot is the map encoded as JSON; its metadata (last log id, membership) is
//! kept beside it. Building or installing a snapshot also writes it to the `snapshot` table with
//! immediate durability, so a restart starts from it.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, RwLock};

use futures_util::{Stream, StreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use redb::{Database, Durability, ReadableDatabase, ReadableTable};

use super::{
    decode_err, io_err, write, StoreError, KEY_SNAPSHOT_DATA, KEY_SNAPSHOT_META, SNAPSHOT,
};
use crate::types::{
    LogId, Request, Response, Snapshot, SnapshotMeta, StoredMembership, TypeConfig,
};

#[derive(Default)]
struct SmData {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    kv: BTreeMap<String, String>,
}

struct Shared {
    data: RwLock<SmData>,
    /// The current snapshot; a tokio mutex because it is held while the snapshot is persisted.
    snapshot: tokio::sync::Mutex<Option<(SnapshotMeta, Vec<u8>)>>,
    db: Arc<Database>,
}

/// A read-only view of a node's state machine, shared with the [`StateMachine`] openraft owns.
///
/// Reads see every applied entry; whether that is linearizable depends on the caller (see
/// [`crate::app::KvNode::read`]).
#[derive(Clone)]
pub struct KvView {
    shared: Arc<Shared>,
}

impl KvView {
    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<String> {
        read_lock(&self.shared).kv.get(key).cloned()
    }

    /// The last applied log id.
    pub fn last_applied(&self) -> Option<LogId> {
        read_lock(&self.shared).last_applied
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        read_lock(&self.shared).kv.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        read_lock(&self.shared).kv.is_empty()
    }
}

fn read_lock(shared: &Shared) -> std::sync::RwLockReadGuard<'_, SmData> {
    // A poisoned lock means a panic while applying, which openraft treats as fatal already;
    // the data itself is still the last consistent state, so reads go on.
    shared.data.read().unwrap_or_else(|e| e.into_inner())
}

fn write_lock(shared: &Shared) -> std::sync::RwLockWriteGuard<'_, SmData> {
    shared.data.write().unwrap_or_else(|e| e.into_inner())
}

/// The state machine handed to openraft.
pub struct StateMachine {
    shared: Arc<Shared>,
}

impl StateMachine {
    pub(super) fn load(db: Arc<Database>) -> Result<Self, StoreError> {
        let snapshot = read_snapshot(&db).map_err(StoreError::Decode)?;
        Ok(Self {
            shared: Arc::new(Shared {
                data: RwLock::new(SmData::default()),
                snapshot: tokio::sync::Mutex::new(snapshot),
                db,
            }),
        })
    }

    /// A read-only view of this state machine.
    pub fn view(&self) -> KvView {
        KvView {
            shared: self.shared.clone(),
        }
    }
}

fn read_snapshot(db: &Database) -> io::Result<Option<(SnapshotMeta, Vec<u8>)>> {
    let txn = db.begin_read().map_err(io_err)?;
    let table = txn.open_table(SNAPSHOT).map_err(io_err)?;
    let meta = table.get(KEY_SNAPSHOT_META).map_err(io_err)?;
    let data = table.get(KEY_SNAPSHOT_DATA).map_err(io_err)?;
    let found = match (meta, data) {
        (Some(meta), Some(data)) => {
            let meta: SnapshotMeta = serde_json::from_slice(meta.value()).map_err(decode_err)?;
            Some((meta, data.value().to_vec()))
        }
        _ => None,
    };
    Ok(found)
}

/// Makes `(meta, data)` the current snapshot unless a newer one is already current, and
/// persists it first.
async fn store_snapshot(shared: &Shared, meta: &SnapshotMeta, data: &[u8]) -> io::Result<()> {
    let mut slot = shared.snapshot.lock().await;
    if let Some((current, _)) = slot.as_ref() {
        if current.last_log_id > meta.last_log_id {
            return Ok(());
        }
    }
    let meta_bytes = serde_json::to_vec(meta).map_err(io::Error::other)?;
    let data_bytes = data.to_vec();
    write(&shared.db, Durability::Immediate, move |txn| {
        let mut table = txn.open_table(SNAPSHOT)?;
        table.insert(KEY_SNAPSHOT_META, meta_bytes.as_slice())?;
        table.insert(KEY_SNAPSHOT_DATA, data_bytes.as_slice())?;
        Ok(())
    })
    .await?;
    *slot = Some((meta.clone(), data.to_vec()));
    Ok(())
}

fn apply_request(kv: &mut BTreeMap<String, String>, req: Request) -> Response {
    let previous = match req {
        Request::Set { key, value } => kv.insert(key, value),
        Request::Delete { key } => kv.remove(&key),
    };
    Response { previous }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let data = read_lock(&self.shared);
        Ok((data.last_applied, data.membership.clone()))
    }

    async fn apply<S>(&mut self, mut entries: S) -> Result<(), io::Error>
    where
        S: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let response = {
                let mut data = write_lock(&self.shared);
                data.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => Response::default(),
                    EntryPayload::Normal(req) => apply_request(&mut data.kv, req),
                    EntryPayload::Membership(m) => {
                        data.membership = StoredMembership::new(Some(entry.log_id), m);
                        Response::default()
                    }
                }
            };
            if let Some(responder) = responder {
                responder.send(response);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            shared: self.shared.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Vec<u8>,
    ) -> Result<(), io::Error> {
        // Decoding megabytes is CPU work: off the runtime's workers, so that heartbeats and
        // appends of this node are not held up by it.
        let (kv, snapshot) = tokio::task::spawn_blocking(move || {
            let kv: Result<BTreeMap<String, String>, _> = serde_json::from_slice(&snapshot);
            (kv, snapshot)
        })
        .await
        .map_err(io::Error::other)?;
        let kv = kv.map_err(decode_err)?;
        store_snapshot(&self.shared, meta, &snapshot).await?;
        let mut data = write_lock(&self.shared);
        data.kv = kv;
        data.last_applied = meta.last_log_id;
        data.membership = meta.last_membership.clone();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let slot = self.shared.snapshot.lock().await;
        Ok(slot.as_ref().map(|(meta, data)| Snapshot {
            meta: meta.clone(),
            snapshot: data.clone(),
        }))
    }
}

/// Builds a snapshot of the state machine as it is when `build_snapshot` runs.
pub struct SnapshotBuilder {
    shared: Arc<Shared>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        // Encoding megabytes is CPU work: off the runtime's workers (see `install_snapshot`).
        let shared = self.shared.clone();
        let (meta, bytes) = tokio::task::spawn_blocking(move || {
            let data = read_lock(&shared);
            let bytes = serde_json::to_vec(&data.kv).map_err(io::Error::other)?;
            let meta = SnapshotMeta {
                last_log_id: data.last_applied,
                last_membership: data.membership.clone(),
            };
            Ok::<_, io::Error>((meta, bytes))
        })
        .await
        .map_err(io::Error::other)??;
        store_snapshot(&self.shared, &meta, &bytes).await?;
        Ok(Snapshot {
            meta,
            snapshot: bytes,
        })
    }
}
