//! Executions that outlive their pass. A pass hands its actions to an execution (second signal,
//! write, verification) and waits only until each write is answered: verifying it on Alibaba Nacos
//! waits for the server's settle time (about 0.6 s), and a pod deleted meanwhile would wait for that
//! too. (Waiting for the writes keeps a burst of deletions in few passes, each confirmed by one pod
//! listing; a pass that did not wait at all made a pass, and a listing of every pod, per few
//! deletions. Waiting at most 1 s, tried in c8dfc42 with 16 write slots, made passes every 2-3 s
//! through a burst of 2,000 deletions, each judging every kept listing: at 30,000 pods on rnacos
//! the last instance went 19.4 s after the last pod instead of 8.0 s with 4 slots and no bound,
//! on the benchmark machine's two cores.) The passes that follow judge the instances still in
//! flight but do not act on them, and take in, at their start, what each ended action learnt
//! (outcome, memory, kept listings, Events); when the last of an execution's actions ends with
//! nobody left to take it in, the binding is asked for a pass.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{watch, Semaphore};

use super::outcome::Outcome;
use crate::model::{Instance, InstanceKey, ServiceKey};
use crate::plan::Change;

/// Write requests in flight at once, over all of a binding's executions. A slot is held for the
/// request alone: the read-back that follows waits outside it (held through it, 4 slots let 6.5
/// writes a second through on Alibaba Nacos: 200 removals took 31.5 s in the scale benchmark).
/// With 16 instead of 4, the 100 disables of a lost node at 1,000 pods on Alibaba Nacos 2.5.1 had
/// their answers in 141 ms instead of 296 ms (`bench/run.sh --pods 1000 --servers nacos-2.5.1`). An
/// execution cut short (operator killed, Nacos gone, leadership lost) leaves writes whose outcome
/// nobody read back; each was confirmed and counted against the budget before it went out, and a
/// later pass lists the service again, so a write in doubt is done at most once more, never
/// wrongly (tests/e2e_faults.rs, whose scenes are sized from this).
pub const WRITES_IN_FLIGHT: usize = 16;

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
    /// Set when the plan found that its service's removals take away its last usable instances.
    pub empties: Option<EmptiedWarning>,
}

impl Finished {
    /// The service this action left empty, the first time one of its plan's actions for that
    /// service is taken in having taken its instance offline: they may end in different passes,
    /// and the service is warned of once.
    pub fn newly_emptied(&self) -> Option<&ServiceKey> {
        let warning = self.empties.as_ref()?;
        (self.outcome.took_offline() && warning.take()).then_some(&self.instance.key.service)
    }
}

/// The warning that a plan's removals leave a service empty, shared by that service's actions.
#[derive(Debug, Clone, Default)]
pub struct EmptiedWarning(Arc<AtomicBool>);

impl EmptiedWarning {
    /// Whether the warning is still to be given; it is given by whoever asks first.
    fn take(&self) -> bool {
        !self.0.swap(true, Ordering::Relaxed)
    }
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
    /// rest are let go unreported). `report` asks for a pass; it is called once both the execution
    /// and the [`Pending`] handle are dropped, if an ended action is left to take in then.
    pub fn start(
        &self,
        instances: impl IntoIterator<Item = InstanceKey>,
        report: impl FnOnce() + Send + 'static,
    ) -> (Execution, Pending) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut shared = lock(&self.shared);
        let mut count = 0;
        for key in instances {
            shared.instances.insert(key, id);
            count += 1;
        }
        let (writing, writes) = watch::channel(count);
        let end = Arc::new(End {
            shared: self.shared.clone(),
            parts_left: AtomicUsize::new(2),
            report: Mutex::new(Some(Box::new(report))),
        });
        let execution = Execution {
            id,
            writing,
            end: end.clone(),
        };
        (execution, Pending { writes, end })
    }
}

/// Asks for a pass once the execution and its pass are both done, if something is left to report.
struct End {
    shared: Arc<Mutex<Shared>>,
    /// Of the execution and the [`Pending`] handle, how many are not dropped yet.
    parts_left: AtomicUsize,
    report: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl End {
    fn part_done(&self) {
        if self.parts_left.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        if lock(&self.shared).finished.is_empty() {
            return;
        }
        let report = self
            .report
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(report) = report {
            report();
        }
    }
}

/// What the launching pass holds of an execution: when its writes are answered. Dropped when the
/// pass is done with it.
pub struct Pending {
    writes: watch::Receiver<usize>,
    end: Arc<End>,
}

impl Pending {
    /// Once every action has had its write answered, or ended without one.
    pub async fn writes_answered(&mut self) {
        // An error: the execution is gone, so are its writes.
        let _ = self.writes.wait_for(|left| *left == 0).await;
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.end.part_done();
    }
}

/// The instances of one execution in flight.
pub struct Execution {
    id: u64,
    /// Actions whose write was not answered yet.
    writing: watch::Sender<usize>,
    end: Arc<End>,
}

impl Execution {
    /// What one action reports of its write. `settles`: the server shows a write only after a
    /// settle time, which is waited out beside the next passes; on a server that shows it at once,
    /// the action's verification is part of its write.
    pub fn write_mark(&self, settles: bool) -> WriteMark<'_> {
        WriteMark {
            writing: &self.writing,
            settles,
            done: AtomicBool::new(false),
        }
    }

    /// One action ended: its instance is no longer in flight, and the next pass takes it in.
    pub fn finish(&self, finished: Finished) {
        let mut shared = lock(&self.end.shared);
        let key = &finished.outcome.action.instance;
        if shared.instances.get(key) == Some(&self.id) {
            shared.instances.remove(key);
        }
        shared.finished.push(finished);
    }
}

impl Drop for Execution {
    fn drop(&mut self) {
        lock(&self.end.shared)
            .instances
            .retain(|_, id| *id != self.id);
        // Whatever was not answered never will be.
        self.writing.send_replace(0);
        self.end.part_done();
    }
}

/// One action's part in [`Pending::writes_answered`]: done at its first write request answered
/// (where the server settles), or when it is dropped (the action has ended; drop it after
/// [`Execution::finish`], so the pass that waited finds the action ended).
pub struct WriteMark<'a> {
    writing: &'a watch::Sender<usize>,
    settles: bool,
    done: AtomicBool,
}

impl WriteMark<'_> {
    /// A write request of the action was answered.
    pub fn answered(&self) {
        if self.settles {
            self.mark();
        }
    }

    fn mark(&self) {
        if !self.done.swap(true, Ordering::AcqRel) {
            self.writing
                .send_modify(|left| *left = left.saturating_sub(1));
        }
    }
}

impl Drop for WriteMark<'_> {
    fn drop(&mut self) {
        self.mark();
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::controller::outcome::{WriteFailed, Written};
    use crate::nacos::NacosError;
    use crate::plan::{Action, ActionKind, Confirm, Verdict};

    fn finished(ip: &str) -> Finished {
        let instance = Instance::of_orders(ip);
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
            empties: None,
        }
    }

    /// A flag the report sets.
    fn reported() -> (Arc<AtomicBool>, impl FnOnce() + Send + 'static) {
        let flag = Arc::new(AtomicBool::new(false));
        let set = flag.clone();
        (flag, move || set.store(true, Ordering::Relaxed))
    }

    #[test]
    fn an_instance_is_in_flight_until_its_action_ends_and_then_taken_in_once() {
        let flight = InFlight::default();
        let keys = ["10.0.0.1", "10.0.0.2"].map(|ip| Instance::of_orders(ip).key);
        let (execution, _pending) = flight.start(keys.clone(), || {});
        let (done, in_flight) = flight.collect();
        assert!(done.is_empty());
        assert_eq!(in_flight, BTreeSet::from(keys.clone()));

        execution.finish(finished("10.0.0.1"));
        let (done, in_flight) = flight.collect();
        assert_eq!(done.len(), 1);
        assert_eq!(in_flight, BTreeSet::from([keys[1].clone()]));
        assert!(flight.collect().0.is_empty(), "taken in once");

        // Dropped before its last action ended (a panic): the instance is let go all the same.
        drop(execution);
        let (done, in_flight) = flight.collect();
        assert!(done.is_empty() && in_flight.is_empty());
    }

    #[test]
    fn a_service_emptied_by_actions_taken_in_by_two_passes_is_warned_of_once() {
        let warning = EmptiedWarning::default();
        let emptying = |ip: &str, result: Written| {
            let mut f = finished(ip);
            f.outcome.result = result;
            f.empties = Some(warning.clone());
            f
        };
        let failed = emptying(
            "10.0.0.1",
            Written::Failed(WriteFailed::request(NacosError::Config("refused".into()))),
        );
        assert_eq!(
            failed.newly_emptied(),
            None,
            "a failed action empties nothing"
        );
        let first = emptying("10.0.0.2", Written::Done);
        assert_eq!(first.newly_emptied(), Some(&first.instance.key.service));
        // Taken in by a later pass: the service was warned of.
        assert_eq!(emptying("10.0.0.3", Written::Done).newly_emptied(), None);
        // Another plan's removals empty it again: a warning of their own.
        let mut again = finished("10.0.0.4");
        again.empties = Some(EmptiedWarning::default());
        assert!(again.newly_emptied().is_some());
        assert_eq!(finished("10.0.0.5").newly_emptied(), None, "not emptying");
    }

    #[test]
    fn a_pass_is_asked_for_only_when_an_ended_action_is_left_untaken() {
        // The launching pass took in everything: nothing to ask for.
        let flight = InFlight::default();
        let (asked, report) = reported();
        let (execution, pending) = flight.start([Instance::of_orders("10.0.0.1").key], report);
        execution.finish(finished("10.0.0.1"));
        drop(execution);
        flight.collect();
        drop(pending);
        assert!(!asked.load(Ordering::Relaxed));

        // An action ended after the launching pass was done: asked for once both are gone.
        let (asked, report) = reported();
        let (execution, pending) = flight.start([Instance::of_orders("10.0.0.1").key], report);
        drop(pending);
        execution.finish(finished("10.0.0.1"));
        assert!(
            !asked.load(Ordering::Relaxed),
            "not before the execution ends"
        );
        drop(execution);
        assert!(asked.load(Ordering::Relaxed));

        // ... whichever of the two goes last.
        let (asked, report) = reported();
        let (execution, pending) = flight.start([Instance::of_orders("10.0.0.1").key], report);
        execution.finish(finished("10.0.0.1"));
        drop(execution);
        assert!(!asked.load(Ordering::Relaxed));
        drop(pending);
        assert!(asked.load(Ordering::Relaxed));
    }

    #[tokio::test]
    async fn the_pass_waits_for_the_writes_and_on_a_server_that_settles_not_for_the_rest() {
        use futures::FutureExt;
        let flight = InFlight::default();
        let keys = ["10.0.0.1", "10.0.0.2"].map(|ip| Instance::of_orders(ip).key);
        let (execution, mut pending) = flight.start(keys, || {});
        let settling = execution.write_mark(true);
        let at_once = execution.write_mark(false);
        assert!(pending.writes_answered().now_or_never().is_none());
        settling.answered();
        at_once.answered();
        assert!(
            pending.writes_answered().now_or_never().is_none(),
            "a server that shows a write at once: the verification is part of the write"
        );
        drop(at_once);
        assert!(pending.writes_answered().now_or_never().is_some());
        // The settling action's read-back goes on; dropping its mark later changes nothing.
        drop(settling);
        assert!(pending.writes_answered().now_or_never().is_some());
    }

    #[tokio::test]
    async fn an_execution_gone_answers_the_waiting_pass() {
        use futures::FutureExt;
        let flight = InFlight::default();
        let (execution, mut pending) = flight.start([Instance::of_orders("10.0.0.1").key], || {});
        drop(execution);
        assert!(pending.writes_answered().now_or_never().is_some());
    }

    #[test]
    fn an_ended_execution_does_not_let_go_of_an_instance_a_later_one_has() {
        let flight = InFlight::default();
        let key = Instance::of_orders("10.0.0.1").key;
        let (first, _a) = flight.start([key.clone()], || {});
        first.finish(finished("10.0.0.1"));
        // A later pass acts on the same instance again before the first execution is dropped.
        let (second, _b) = flight.start([key.clone()], || {});
        drop(first);
        assert_eq!(flight.collect().1, BTreeSet::from([key.clone()]));
        drop(second);
        assert!(flight.collect().1.is_empty());
    }
}
