//! What reconcile passes share: the cluster view, the clients, and each binding's state between
//! passes. Below the stages that use it, above the parts it holds.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::channel::mpsc::UnboundedSender;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::ObjectRef;
use kube::Client;
use tokio::sync::Mutex;

use super::events::EventRecorder;
use super::focus::Kept;
use super::in_flight::InFlight;
use super::overlap::Claims;
use super::recheck::Rechecks;
use super::status_lane::{StatusLane, StatusWriter};
use crate::cluster::ClusterView;
use crate::crd::NacosBinding;
use crate::leader::ActingGate;
use crate::metrics::Metrics;
use crate::nacos::NacosClient;
use crate::plan::Memory;

/// What a binding's passes share: remembered decisions and the Nacos client.
#[derive(Default)]
pub struct BindingState {
    pub memory: Option<Memory>,
    /// The client and the fingerprint of the configuration it was built from.
    pub nacos: Option<(u64, Arc<NacosClient>)>,
    /// The registry as the last passes listed it, for focused passes between full ones.
    pub kept: Option<Kept>,
    /// Services to list again because of what the operator did (see [`super::recheck`]).
    pub rechecks: Rechecks,
    /// The binding's status writes.
    pub status: Arc<StatusLane>,
    /// Actions of earlier passes still being carried out, and those that ended.
    pub in_flight: InFlight,
}

/// Shared by every reconcile pass.
pub struct Context {
    pub client: Client,
    pub view: ClusterView,
    pub metrics: Arc<Metrics>,
    pub recorder: Arc<EventRecorder>,
    /// Per binding UID.
    pub bindings: Mutex<HashMap<String, Arc<Mutex<BindingState>>>>,
    /// What each binding governs, to find bindings that share services.
    pub claims: Claims,
    /// Closed while this process is not the leader, during the settle period after winning, and
    /// once its last Lease renewal is too old.
    pub acting_allowed: Arc<ActingGate>,
    /// Where a binding asks for a pass once an execution of its actions has ended.
    nudges: Option<UnboundedSender<ObjectRef<NacosBinding>>>,
}

impl Context {
    /// `controller` and `instance` name the Events' reporter.
    pub fn new(
        client: Client,
        view: ClusterView,
        metrics: Arc<Metrics>,
        acting_allowed: Arc<ActingGate>,
        controller: &str,
        instance: Option<String>,
    ) -> Self {
        let reporter = Reporter {
            controller: controller.into(),
            instance,
        };
        Self {
            recorder: Arc::new(EventRecorder::new(client.clone(), reporter)),
            client,
            view,
            metrics,
            bindings: Mutex::new(HashMap::new()),
            claims: Claims::default(),
            acting_allowed,
            nudges: None,
        }
    }

    /// Passes are asked for on `nudges` when an execution has ended (see [`Self::nudge_for`]).
    pub fn with_nudges(self, nudges: UnboundedSender<ObjectRef<NacosBinding>>) -> Self {
        Self {
            nudges: Some(nudges),
            ..self
        }
    }

    /// Asks for a pass of `b` when called: it reports what its ended execution did.
    pub fn nudge_for(&self, b: &NacosBinding) -> impl FnOnce() + Send + 'static {
        let (nudges, object) = (self.nudges.clone(), ObjectRef::from_obj(b));
        move || {
            if let Some(nudges) = nudges {
                // Closed only when the controller has stopped: nothing left to report to.
                let _ = nudges.unbounded_send(object);
            }
        }
    }

    pub fn acting_allowed(&self) -> bool {
        self.acting_allowed.allowed()
    }

    /// What the binding's status lane writes with.
    pub fn status_writer(&self) -> StatusWriter {
        StatusWriter {
            client: self.client.clone(),
            gate: self.acting_allowed.clone(),
            metrics: self.metrics.clone(),
        }
    }

    pub async fn binding_state(&self, uid: &str) -> Arc<Mutex<BindingState>> {
        let mut map = self.bindings.lock().await;
        map.entry(uid.to_string()).or_default().clone()
    }

    /// Drops what the passes of bindings that no longer exist left behind: their memory, Nacos
    /// client, kept listings and claims (a deleted binding no longer overlaps anyone's).
    pub async fn forget_bindings_except(&self, existing: &HashSet<String>) {
        self.bindings
            .lock()
            .await
            .retain(|uid, _| existing.contains(uid));
        self.claims.retain(|uid| existing.contains(uid));
    }
}
