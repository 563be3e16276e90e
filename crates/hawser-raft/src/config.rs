//! Node configuration and the openraft [`Config`] it produces.
//!
//! # Snapshot and compaction policy
//!
//! - [`NodeConfig::snapshot_logs_since_last`] (default 5000): openraft builds a snapshot once
//!   this many entries were applied since the last one ([`SnapshotPolicy::LogsSinceLast`]).
//! - [`NodeConfig::max_in_snapshot_log_to_keep`] (default 1000): after a snapshot, openraft purges
//!   the log entries it covers except the newest this many, so a follower that lags by fewer
//!   entries catches up from the log instead of needing the whole snapshot.
//!
//! A snapshot is the whole map encoded as JSON, so with the defaults the log holds at most about
//! 6000 entries and a snapshot is built once per 5000 writes.

use std::sync::Arc;
use std::time::Duration;

use openraft::{Config, ConfigError, SnapshotPolicy};

use crate::types::NodeId;

/// How one node runs: its id and address, Raft timing, snapshot policy and request limits.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct NodeConfig {
    /// The node id.
    pub id: NodeId,
    /// The node's hawser address, recorded in the membership.
    pub addr: String,
    /// The cluster name openraft logs with.
    pub cluster_name: String,
    /// How often a leader sends heartbeats (default 50 ms).
    pub heartbeat_interval: Duration,
    /// The shortest election timeout (default 150 ms).
    pub election_timeout_min: Duration,
    /// The longest election timeout (default 300 ms).
    pub election_timeout_max: Duration,
    /// Entries applied between two snapshots (default 5000); see the module docs.
    pub snapshot_logs_since_last: u64,
    /// Entries kept in the log behind a snapshot (default 1000); see the module docs.
    pub max_in_snapshot_log_to_keep: u64,
    /// How long a client write or read may take, including forwarding (default 5 s).
    pub request_timeout: Duration,
}

impl NodeConfig {
    /// A configuration for node `id` at `addr` with the defaults listed on each field.
    pub fn new(id: NodeId, addr: impl Into<String>) -> Self {
        Self {
            id,
            addr: addr.into(),
            cluster_name: "hawser-raft".to_owned(),
            heartbeat_interval: Duration::from_millis(50),
            election_timeout_min: Duration::from_millis(150),
            election_timeout_max: Duration::from_millis(300),
            snapshot_logs_since_last: 5000,
            max_in_snapshot_log_to_keep: 1000,
            request_timeout: Duration::from_secs(5),
        }
    }

    /// The openraft configuration, validated.
    ///
    /// # Errors
    ///
    /// When openraft rejects the combination (for example an election timeout not longer than
    /// the heartbeat interval).
    pub fn raft_config(&self) -> Result<Arc<Config>, ConfigError> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let config = Config {
            cluster_name: self.cluster_name.clone(),
            heartbeat_interval: ms(self.heartbeat_interval),
            election_timeout_min: ms(self.election_timeout_min),
            election_timeout_max: ms(self.election_timeout_max),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_logs_since_last),
            max_in_snapshot_log_to_keep: self.max_in_snapshot_log_to_keep,
            ..Default::default()
        };
        Ok(Arc::new(config.validate()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        let config = NodeConfig::new(1, "a").raft_config().unwrap();
        assert_eq!(config.heartbeat_interval, 50);
        assert_eq!(config.snapshot_policy, SnapshotPolicy::LogsSinceLast(5000));
    }

    #[test]
    fn an_election_timeout_below_the_heartbeat_is_refused() {
        let mut config = NodeConfig::new(1, "a");
        config.election_timeout_min = Duration::from_millis(10);
        config.election_timeout_max = Duration::from_millis(20);
        assert!(config.raft_config().is_err());
    }
}
