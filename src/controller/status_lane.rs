//! A binding's status writes, off the pass's path. A pass hands its status over and goes on; a
//! background task writes the newest status handed over (one superseded before its turn is never
//! written). With 10,000 instances a status write takes the API server 20–200 ms, and waiting for it
//! held the next pass, and so the next removal, back by as much.
//!
//! The removal budget is recorded through the same lane, before it is spent ([`StatusLane::record_budget`]),
//! so a status written later can never be an older one that lacks the record.

use std::sync::{Arc, Mutex, MutexGuard};

use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use tracing::warn;

use super::outcome::key;
use super::status::{budget_fields, removal_records};
use crate::crd::{NacosBinding, NacosBindingStatus};
use crate::leader::ActingGate;
use crate::metrics::{BindingLabels, Metrics};
use crate::plan::Memory;

/// The field manager of every status write.
pub const FIELD_MANAGER: &str = "nacos-reconciler";

/// What the background status writes use.
pub struct StatusWriter {
    pub client: Client,
    /// A status handed over by a leader that has since lost the lead is not written.
    pub gate: Arc<ActingGate>,
    /// A failed write counts as a reconcile error.
    pub metrics: Arc<Metrics>,
}

#[derive(Default)]
pub struct StatusLane {
    /// The newest status handed over and not yet sent.
    pending: Mutex<Option<NacosBindingStatus>>,
    /// The newest status handed over, sent or not: the next pass starts from it, since the binding
    /// it gets comes from the watch cache, which may not show that status yet.
    last: Mutex<Option<NacosBindingStatus>>,
    /// Held while a write is in flight: writes go one at a time, in the order they take it.
    writing: tokio::sync::Mutex<()>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl StatusLane {
    /// The status this process last handed over for the binding, if any.
    pub fn last(&self) -> Option<NacosBindingStatus> {
        locked(&self.last).clone()
    }

    /// Forgets what this process wrote: a standby must start from what the leader wrote.
    pub fn forget(&self) {
        *locked(&self.pending) = None;
        *locked(&self.last) = None;
    }

    /// Hands `status` over; it is written in the background unless a newer one replaces it first.
    /// A failed write is logged and counted as a reconcile error; the next pass writes again.
    pub fn submit(
        self: &Arc<Self>,
        writer: StatusWriter,
        b: &NacosBinding,
        status: NacosBindingStatus,
    ) {
        *locked(&self.last) = Some(status.clone());
        *locked(&self.pending) = Some(status);
        let lane = self.clone();
        let api = binding_api(&writer.client, b);
        let (name, binding) = (b.name_any(), key(b));
        tokio::spawn(async move {
            let _turn = lane.writing.lock().await;
            let Some(status) = locked(&lane.pending).take() else {
                return; // a later write carried it
            };
            // Leadership lost while this waited: the status is the new leader's to write.
            if !writer.gate.allowed() {
                return;
            }
            if let Err(e) = apply(&api, &name, &status).await {
                warn!(%binding, error = %e, "could not write status");
                writer
                    .metrics
                    .reconcile_errors
                    .get_or_create(&BindingLabels { binding })
                    .inc();
            }
        });
    }

    /// Writes the removal history and the consumed approval of `memory` (a plan's, before its
    /// actions run), after any write in flight. A status handed over and not yet sent goes in the
    /// same request; otherwise only those fields change.
    pub async fn record_budget(
        &self,
        client: &Client,
        b: &NacosBinding,
        memory: &Memory,
    ) -> Result<(), kube::Error> {
        let _turn = self.writing.lock().await;
        let api = binding_api(client, b);
        let pending = locked(&self.pending).take();
        match pending {
            Some(mut status) => {
                status.removals = removal_records(memory);
                if memory.approval_consumed.is_some() {
                    status.approved_token = memory.approval_consumed.clone();
                }
                apply(&api, &b.name_any(), &status).await
            }
            None => api
                .patch_status(
                    &b.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(serde_json::json!({ "status": budget_fields(memory) })),
                )
                .await
                .map(|_| ()),
        }
    }
}

fn binding_api(client: &Client, b: &NacosBinding) -> Api<NacosBinding> {
    Api::namespaced(client.clone(), &b.namespace().unwrap_or_default())
}

/// The whole status, applied by the operator's field manager.
async fn apply(
    api: &Api<NacosBinding>,
    name: &str,
    status: &NacosBindingStatus,
) -> Result<(), kube::Error> {
    let patch = serde_json::json!({
        "apiVersion": "nacos-reconciler.io/v1alpha1",
        "kind": "NacosBinding",
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(|_| ())
}
