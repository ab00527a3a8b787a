//! How a pass ends early: the one error type of its stages, so `?` goes straight through them.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action as Requeue;
use tracing::warn;

use super::context::Context;
use super::outcome::key;
use super::problem::Problem;
use crate::crd::NacosBinding;
use crate::metrics::BindingLabels;
use crate::nacos::NacosError;

/// Errors the controller's error policy handles: logged, counted, retried. None crashes the
/// operator.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("the binding has no namespace")]
    NoNamespace,
    #[error("reading Secret {0}: {1}")]
    SecretRead(String, #[source] kube::Error),
}

/// Why a pass stopped before it acted. Nothing is written to Nacos either way.
#[derive(Debug)]
pub enum Stop {
    /// Reported as a condition and a Warning Event. A spec problem is tried again at the next
    /// resync (only a change helps, and a change starts a pass); others sooner.
    Reported { problem: Problem, soon: bool },
    /// The API server failed a request of the pass: the controller's error policy takes it.
    Api(ReconcileError),
}

impl Stop {
    /// A spec problem the schema cannot catch.
    pub fn spec(message: impl ToString) -> Self {
        Stop::Reported {
            problem: Problem::InvalidSpec(message.to_string()),
            soon: false,
        }
    }

    /// A problem that may go away by itself (a server down, a Secret not yet created).
    pub fn soon(problem: Problem) -> Self {
        Stop::Reported {
            problem,
            soon: true,
        }
    }
}

impl From<NacosError> for Stop {
    fn from(e: NacosError) -> Self {
        Stop::soon(Problem::from_nacos(&e))
    }
}

impl From<ReconcileError> for Stop {
    fn from(e: ReconcileError) -> Self {
        Stop::Api(e)
    }
}

/// Sooner than a full resync after a Nacos failure, but not hot.
pub fn retry_after(resync: Duration) -> Duration {
    resync.min(Duration::from_secs(10))
}

pub fn error_policy(b: Arc<NacosBinding>, e: &ReconcileError, ctx: Arc<Context>) -> Requeue {
    warn!(binding = %key(&b), error = %e, "reconcile failed");
    ctx.metrics
        .reconcile_errors
        .get_or_create(&BindingLabels { binding: key(&b) })
        .inc();
    Requeue::requeue(Duration::from_secs(15))
}
