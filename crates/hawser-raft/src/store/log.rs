//! The Raft log and vote on redb.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use redb::{Database, Durability, ReadableDatabase, ReadableTable};

use super::{decode_err, io_err, read_meta, write, KEY_COMMITTED, KEY_PURGED, KEY_VOTE, LOG, META};
use crate::types::{Entry, LogId, TypeConfig, Vote};

/// The log store: entries, vote, committed and purged log ids. It is also its own log reader.
///
/// Cheap to clone; clones share the database.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

impl LogStore {
    pub(super) fn new(db: Arc<Database>) -> Self {
        Self { db }
    }

    fn last_entry_log_id(&self) -> io::Result<Option<LogId>> {
        let txn = self.db.begin_read().map_err(io_err)?;
        let table = txn.open_table(LOG).map_err(io_err)?;
        let last = table.last().map_err(io_err)?;
        let Some((_, v)) = last else {
            return Ok(None);
        };
        let entry: Entry = serde_json::from_slice(v.value()).map_err(decode_err)?;
        Ok(Some(entry.log_id))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let bounds: (Bound<u64>, Bound<u64>) =
            (range.start_bound().cloned(), range.end_bound().cloned());
        let txn = self.db.begin_read().map_err(io_err)?;
        let table = txn.open_table(LOG).map_err(io_err)?;
        let mut out = Vec::new();
        for item in table.range(bounds).map_err(io_err)? {
            let (_, v) = item.map_err(io_err)?;
            out.push(serde_json::from_slice(v.value()).map_err(decode_err)?);
        }
        Ok(out)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        read_meta(&self.db, KEY_VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged_log_id: Option<LogId> = read_meta(&self.db, KEY_PURGED)?;
        let last_log_id = self.last_entry_log_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let bytes = serde_json::to_vec(vote).map_err(io::Error::other)?;
        write(&self.db, Durability::Immediate, move |txn| {
            txn.open_table(META)?.insert(KEY_VOTE, bytes.as_slice())?;
            Ok(())
        })
        .await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        let bytes = serde_json::to_vec(&committed).map_err(io::Error::other)?;
        write(&self.db, Durability::None, move |txn| {
            txn.open_table(META)?
                .insert(KEY_COMMITTED, bytes.as_slice())?;
            Ok(())
        })
        .await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(read_meta::<Option<LogId>>(&self.db, KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut encoded = Vec::new();
        for entry in entries {
            let bytes = serde_json::to_vec(&entry).map_err(io::Error::other)?;
            encoded.push((entry.log_id.index, bytes));
        }
        let result = write(&self.db, Durability::Immediate, move |txn| {
            let mut table = txn.open_table(LOG)?;
            for (index, bytes) in &encoded {
                table.insert(index, bytes.as_slice())?;
            }
            Ok(())
        })
        .await;
        // The entries are readable and on disk only now: report either outcome to openraft.
        match result {
            Ok(()) => {
                callback.io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.io_completed(Err(io::Error::new(e.kind(), e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |id| id.index + 1);
        write(&self.db, Durability::Immediate, move |txn| {
            txn.open_table(LOG)?.retain_in(from.., |_, _| false)?;
            Ok(())
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let bytes = serde_json::to_vec(&log_id).map_err(io::Error::other)?;
        let upto = log_id.index;
        // The purged id and the removal commit together, so no hole can appear.
        write(&self.db, Durability::Immediate, move |txn| {
            txn.open_table(META)?.insert(KEY_PURGED, bytes.as_slice())?;
            txn.open_table(LOG)?.retain_in(..=upto, |_, _| false)?;
            Ok(())
        })
        .await
    }
}
