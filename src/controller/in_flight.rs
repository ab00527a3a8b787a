//! Executions that outlive their pass. A pass hands its actions to an execution (second signal,
//! write, verification) and ends without waiting for it: verifying a write on Alibaba Nacos waits
//! for the server's settle time (about 0.6 s), and a pod deleted meanwhile would wait for that
//! too. The passes that follow judge the instances still in flight but do not act on them, and
//! take in, at their start, what each ended action learnt (outcome, memory, kept listings, Events).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Semaphore;

use super::outcome::Outcome;
use crate::model::{Instance, InstanceKey};
use crate::plan::Change;

/// Write requests in flight at once, over all of a binding's executions. A slot is held for the
/// request alone: the read-back that follows waits outside it (held through it, 4 slots let 6.5
/// writes a second through on Alibaba Nacos: 200 removals took 31.5 s in the scale benchmark). An
/// execution cut short (operator killed, Nacos gone, leadership lost) leaves writes whose outcome
/// nobody read back; each was confirmed and counted against the budget before it went out, and a
/// later pass lists the service again, so a write in doubt is done at most once more, never
/// wrongly (tests/e2e_faults.rs).
const WRITES_IN_FLIGHT: usize = 4;

/// Owner lookups (who keeps an instance registered) in flight at once, over all of a binding's
/// executions: asked by every deregistration before its write, they would otherwise reach Nacos
/// all at once.
const ASKS_IN_FLIGHT: usize = 16;

/// One action that ended, with what the binding's next pass takes in.
#[derive(Debug)]
pub struct Finished {
    pub outcome: Outcome,
    /// The instance as the pass that planned the action listed it.
    pub instance: Instance,
    /// What the memory must keep of it.
    pub changes: Vec<Change>,
    /// The plan found that its service's removals take away its last usable instances.
    pub empties: bool,
}

#[derive(Default)]
struct Shared {
    /// Each instance in flight, with the execution that has it.
    instances: BTreeMap<InstanceKey, u64>,
    finished: Vec<Finished>,
}

/// A binding's executions: the instances in flight, what ended, and the slots they share.
pub struct InFlight {
    shared: Arc<Mutex<Shared>>,
    next_id: AtomicU64,
    /// Write request slots ([`WRITES_IN_FLIGHT`]).
    pub writing: Arc<Semaphore>,
    /// Owner lookup slots ([`ASKS_IN_FLIGHT`]).
    pub asking: Arc<Semaphore>,
}

impl Default for InFlight {
    fn default() -> Self {
        Self {
            shared: Arc::default(),
            next_id: AtomicU64::new(0),
            writing: Arc::new(Semaphore::new(WRITES_IN_FLIGHT)),
            asking: Arc::new(Semaphore::new(ASKS_IN_FLIGHT)),
        }
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // Held for short, synchronous updates only; whatever a panic left is still consistent.
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl InFlight {
    /// What ended since the last call, and the instances still in flight, read at once: an action
    /// is in one or the other, or was taken in before.
    pub fn collect(&self) -> (Vec<Finished>, BTreeSet<InstanceKey>) {
        let mut shared = lock(&self.shared);
        let finished = std::mem::take(&mut shared.finished);
        (finished, shared.instances.keys().cloned().collect())
    }

    /// Marks `instances` in flight until the execution finishes each, or is dropped (then the
    /// rest are let go unreported). `on_end` runs when it is dropped.
    pub fn start(
        &self,
        instances: impl IntoIterator<Item = InstanceKey>,
        on_end: impl FnOnce() + Send + Sync + 'static,
    ) -> Execution {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut shared = lock(&self.shared);
        for key in instances {
            shared.instances.insert(key, id);
        }
        Execution {
            shared: self.shared.clone(),
            id,
            on_end: Some(Box::new(on_end)),
        }
    }
}

/// The instances of one execution in flight.
pub struct Execution {
    shared: Arc<Mutex<Shared>>,
    id: u64,
    on_end: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl Execution {
    /// One action ended: its instance is no longer in flight, and the next pass takes it in.
    pub fn finish(&self, finished: Finished) {
        let mut shared = lock(&self.shared);
        let key = &finished.outcome.action.instance;
        if shared.instances.get(key) == Some(&self.id) {
            shared.instances.remove(key);
        }
        shared.finished.push(finished);
    }
}

impl Drop for Execution {
    fn drop(&mut self) {
        lock(&self.shared).instances.retain(|_, id| *id != self.id);
        if let Some(on_end) = self.on_end.take() {
            on_end();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use chrono::Utc;

    use super::*;
    use crate::controller::outcome::Written;
    use crate::model::ServiceKey;
    use crate::plan::{Action, ActionKind, Confirm, Verdict};

    fn instance(ip: &str) -> Instance {
        Instance {
            key: InstanceKey {
                service: ServiceKey::new("DEFAULT_GROUP", "orders"),
                cluster: "DEFAULT".into(),
                ip: ip.parse().unwrap(),
                port: 8080,
            },
            listed_ip: ip.into(),
            ephemeral: true,
            enabled: true,
            healthy: true,
            weight: 1.0,
            metadata: BTreeMap::new(),
        }
    }

    fn finished(ip: &str) -> Finished {
        let instance = instance(ip);
        Finished {
            outcome: Outcome {
                action: Action {
                    kind: ActionKind::Deregister,
                    instance: instance.key.clone(),
                    ephemeral: true,
                    verdict: Verdict::Orphan,
                    reason: "pod deleted".into(),
                    evidence_at: Utc::now(),
                    confirm: Confirm::None,
                    replaces_deregister: false,
                },
                result: Written::Done,
            },
            instance,
            changes: vec![],
            empties: false,
        }
    }

    #[test]
    fn an_instance_is_in_flight_until_its_action_ends_and_then_reported_once() {
        let flight = InFlight::default();
        let ended = Arc::new(AtomicBool::new(false));
        let on_end = {
            let ended = ended.clone();
            move || ended.store(true, Ordering::Relaxed)
        };
        let keys = ["10.0.0.1", "10.0.0.2"].map(|ip| instance(ip).key);
        let execution = flight.start(keys.clone(), on_end);
        let (done, in_flight) = flight.collect();
        assert!(done.is_empty());
        assert_eq!(in_flight, BTreeSet::from(keys.clone()));

        execution.finish(finished("10.0.0.1"));
        let (done, in_flight) = flight.collect();
        assert_eq!(done.len(), 1);
        assert_eq!(in_flight, BTreeSet::from([keys[1].clone()]));
        assert!(flight.collect().0.is_empty(), "taken in once");
        assert!(!ended.load(Ordering::Relaxed));

        // Dropped before its last action ended (a panic): the instance is let go all the same.
        drop(execution);
        assert!(ended.load(Ordering::Relaxed));
        let (done, in_flight) = flight.collect();
        assert!(done.is_empty() && in_flight.is_empty());
    }

    #[test]
    fn an_ended_execution_does_not_let_go_of_an_instance_a_later_one_has() {
        let flight = InFlight::default();
        let key = instance("10.0.0.1").key;
        let first = flight.start([key.clone()], || {});
        first.finish(finished("10.0.0.1"));
        // A later pass acts on the same instance again before the first execution is dropped.
        let second = flight.start([key.clone()], || {});
        drop(first);
        assert_eq!(flight.collect().1, BTreeSet::from([key.clone()]));
        drop(second);
        assert!(flight.collect().1.is_empty());
    }
}
