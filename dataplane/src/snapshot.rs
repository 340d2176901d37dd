//! Configuration snapshots shared between the control plane and the workers that run pipelines.
//!
//! The control plane validates a change into a new immutable [`NodeConfig`] and publishes it with
//! the next epoch ([`ConfigCell::publish`]). A worker holds a [`ConfigReader`] and calls
//! [`ConfigReader::poll`] once per batch: one atomic load when nothing changed, and a lock plus an
//! `Arc` clone only when a new epoch is out. Packets of a batch finish under the snapshot the batch
//! started with. Each reader acknowledges the epoch it switched to, so the control plane can tell
//! when a change is active on every worker ([`ConfigCell::wait_applied`]).
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::pipeline::NodeConfig;

/// The running configuration of one node and the epochs its workers have picked up.
#[derive(Debug)]
pub struct ConfigCell {
    epoch: AtomicU32,
    current: Mutex<Arc<NodeConfig>>,
    /// One acknowledgement per reader: the epoch it runs.
    applied: Mutex<Vec<Arc<AtomicU32>>>,
}

impl ConfigCell {
    /// A cell whose first snapshot is `config` (its epoch is kept).
    pub fn new(config: NodeConfig) -> Arc<Self> {
        Arc::new(ConfigCell {
            epoch: AtomicU32::new(config.epoch),
            current: Mutex::new(Arc::new(config)),
            applied: Mutex::new(Vec::new()),
        })
    }

    /// The current snapshot.
    pub fn load(&self) -> Arc<NodeConfig> {
        lock(&self.current).clone()
    }

    /// The epoch of the current snapshot.
    pub fn epoch(&self) -> u32 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Build the next snapshot from the current one and publish it with the next epoch. `change`
    /// sees the running config and returns the new one or an error; on error nothing changes.
    /// Changes are serialised: two concurrent calls never publish the same epoch.
    pub fn publish<E>(
        &self,
        change: impl FnOnce(&NodeConfig) -> Result<NodeConfig, E>,
    ) -> Result<Arc<NodeConfig>, E> {
        let mut current = lock(&self.current);
        let mut next = change(&current)?;
        next.epoch = current.epoch.wrapping_add(1);
        let next = Arc::new(next);
        *current = next.clone();
        self.epoch.store(next.epoch, Ordering::Release);
        Ok(next)
    }

    /// A reader for one worker, starting on the current snapshot.
    pub fn reader(self: &Arc<Self>) -> ConfigReader {
        let current = self.load();
        let ack = Arc::new(AtomicU32::new(current.epoch));
        lock(&self.applied).push(ack.clone());
        ConfigReader {
            cell: self.clone(),
            seen: current.epoch,
            ack,
        }
    }

    /// Whether every live reader runs `epoch` (or a later one).
    pub fn is_applied(&self, epoch: u32) -> bool {
        let mut applied = lock(&self.applied);
        // A dropped reader holds the only other reference no more.
        applied.retain(|a| Arc::strong_count(a) > 1);
        applied
            .iter()
            .all(|a| a.load(Ordering::Acquire).wrapping_sub(epoch) < u32::MAX / 2)
    }

    /// Wait until every live reader runs `epoch`; false when `timeout` passes first.
    pub fn wait_applied(&self, epoch: u32, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.is_applied(epoch) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_micros(10));
        }
    }

    /// How many readers are live.
    pub fn readers(&self) -> usize {
        let mut applied = lock(&self.applied);
        applied.retain(|a| Arc::strong_count(a) > 1);
        applied.len()
    }
}

/// One worker's view of a [`ConfigCell`].
#[derive(Debug)]
pub struct ConfigReader {
    cell: Arc<ConfigCell>,
    seen: u32,
    ack: Arc<AtomicU32>,
}

impl ConfigReader {
    /// The new snapshot when one was published since the last call; call between batches.
    #[inline]
    pub fn poll(&mut self) -> Option<Arc<NodeConfig>> {
        if self.cell.epoch.load(Ordering::Acquire) == self.seen {
            return None;
        }
        let next = self.cell.load();
        self.seen = next.epoch;
        Some(next)
    }

    /// Acknowledge that the snapshot [`poll`](Self::poll) returned is now in use.
    pub fn applied(&self) {
        self.ack.store(self.seen, Ordering::Release);
    }

    /// The epoch this reader last picked up.
    pub fn epoch(&self) -> u32 {
        self.seen
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves a whole value behind (every write is one store).
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(node_id: u32) -> NodeConfig {
        NodeConfig {
            name: "n".into(),
            node_id,
            forwarding: crate::pipeline::Forwarding::Bump,
            malformed: crate::pipeline::MalformedPolicy::Forward,
            timestamp_format: crate::ioam::TimestampFormat::Ptp,
            ports: vec![],
            routes6: vec![],
            routes4: vec![],
            namespaces: vec![],
            pim: Default::default(),
            bifts: vec![],
            epoch: 7,
        }
    }

    #[test]
    fn readers_see_each_epoch_once_and_acknowledge_it() {
        let cell = ConfigCell::new(config(1));
        let mut a = cell.reader();
        let mut b = cell.reader();
        assert_eq!(a.poll(), None);
        assert!(cell.is_applied(7));

        let next = cell.publish(|c| {
            Ok::<_, ()>(NodeConfig {
                node_id: 2,
                ..c.clone()
            })
        });
        let next = next.unwrap();
        assert_eq!((next.epoch, next.node_id), (8, 2));
        assert_eq!(cell.epoch(), 8);
        assert!(!cell.is_applied(8));

        let got = a.poll().unwrap();
        assert_eq!((got.epoch, got.node_id), (8, 2));
        assert_eq!(a.poll(), None);
        a.applied();
        assert!(!cell.is_applied(8), "b has not switched yet");
        b.poll().unwrap();
        b.applied();
        assert!(cell.is_applied(8));
        assert!(cell.wait_applied(8, Duration::ZERO));
    }

    #[test]
    fn a_refused_change_keeps_the_running_config() {
        let cell = ConfigCell::new(config(1));
        let mut r = cell.reader();
        let err = cell.publish(|_| Err::<NodeConfig, _>("node_id: out of range"));
        assert_eq!(err.unwrap_err(), "node_id: out of range");
        assert_eq!(cell.epoch(), 7);
        assert_eq!(cell.load().node_id, 1);
        assert_eq!(r.poll(), None);
    }

    #[test]
    fn dropped_readers_do_not_hold_back_an_epoch() {
        let cell = ConfigCell::new(config(1));
        let r = cell.reader();
        assert_eq!(cell.readers(), 1);
        cell.publish(|c| Ok::<_, ()>(c.clone())).unwrap();
        drop(r);
        assert_eq!(cell.readers(), 0);
        assert!(cell.is_applied(8));
    }
}
