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
    /// A bug: the pass panicked. Contained, so one binding's pass cannot take the process (and
    /// every other binding) down into a crash loop.
    #[error("the pass panicked: {0}")]
    Panicked(String),
}

/// Runs a pass, turning a panic into [`ReconcileError::Panicked`]. What the pass held is released
/// as it unwinds (its locks are tokio's, which do not poison); its binding's next pass starts over.
pub async fn contain_panic<T>(
    pass: impl std::future::Future<Output = Result<T, ReconcileError>>,
) -> Result<T, ReconcileError> {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(pass).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_string());
            tracing::error!(%what, "reconcile pass panicked");
            Err(ReconcileError::Panicked(what))
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_pass_is_an_error_not_a_crash() {
        let pass = async {
            let held: Vec<usize> = Vec::new();
            let n: usize = held.len();
            if n == 0 {
                panic!("attempt to subtract with overflow");
            }
            Ok::<usize, ReconcileError>(n)
        };
        match contain_panic(pass).await {
            Err(ReconcileError::Panicked(what)) => {
                assert_eq!(what, "attempt to subtract with overflow")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            contain_panic(async { Ok::<u8, ReconcileError>(7) }).await,
            Ok(7)
        ));
    }
}
