//! What the stages of a pass hand on: the binding's key, and what became of each action. Below
//! every other file of the controller, so that none of them imports another back.

use std::net::IpAddr;
use std::sync::Arc;

use kube::ResourceExt;

use crate::crd::NacosBinding;
use crate::nacos::{NacosError, Publisher};
use crate::plan::{Action, ActionKind};

/// `namespace/name`: how logs, metrics and the claims name a binding.
pub fn key(b: &NacosBinding) -> String {
    format!("{}/{}", b.namespace().unwrap_or_default(), b.name_any())
}

/// What became of one planned action.
#[derive(Debug, Clone)]
pub enum Written {
    /// Written and seen to take.
    Done,
    /// A deregistration that cannot take, disabled instead; `disabled` says whether that took.
    /// `owner`: the client the server named as keeping the instance (a gRPC connection, or an
    /// HTTP registration's beats; no DELETE was sent); `None`: the DELETE was answered `ok` and
    /// the instance stayed.
    Ineffective {
        disabled: bool,
        owner: Option<Publisher>,
    },
    /// The second signal contradicted the cache: nothing was written.
    NotConfirmed(Unconfirmed),
    /// The write or its verification failed: nothing is assumed.
    Failed(WriteFailed),
}

/// Why an action was not written: the evidence changed, or could not be had, before the write.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Unconfirmed {
    #[error("the API server still has pod {pod} on {ip}")]
    ApiServerHasPod { pod: String, ip: IpAddr },
    #[error("confirming with the API server failed: {0}")]
    ApiServerFailed(Arc<kube::Error>),
    #[error("pod {pod} has {ip} now (seen while the pass was writing)")]
    CacheHasPod { pod: String, ip: IpAddr },
    #[error("the watch caches lost their sync while the pass was writing")]
    CacheLostSync,
    #[error("the binding's pod selector is invalid")]
    NoPodScope,
    #[error("no longer the settled leader with a fresh Lease")]
    NotLeading,
}

/// Why a write did not take, as far as the operator can tell.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteFailed {
    /// The request failed: it may or may not have reached the server.
    #[error(transparent)]
    Request(Arc<NacosError>),
    /// Written, but reading it back failed: whether it took is unknown.
    #[error("verifying the {what}: {error}")]
    ReadBack {
        what: &'static str,
        error: Arc<NacosError>,
    },
    /// Read back, the instance is not as written.
    #[error("the instance is {0} after the write")]
    NotAsWritten(&'static str),
}

impl WriteFailed {
    pub fn request(e: NacosError) -> Self {
        WriteFailed::Request(Arc::new(e))
    }

    pub fn read_back(what: &'static str, e: NacosError) -> Self {
        WriteFailed::ReadBack {
            what,
            error: Arc::new(e),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub action: Action,
    pub result: Written,
}

impl Outcome {
    /// Taken offline with `enabled=false`: Nacos goes on listing it.
    pub fn left_disabled(&self) -> bool {
        match self.result {
            Written::Done => self.action.kind == ActionKind::Disable,
            Written::Ineffective { disabled, .. } => disabled,
            _ => false,
        }
    }

    /// Taken offline, by the planned action or by the fallback.
    pub fn took_offline(&self) -> bool {
        self.action.kind.is_removal()
            && matches!(
                self.result,
                Written::Done | Written::Ineffective { disabled: true, .. }
            )
    }
}
