//! What the stages of a pass hand on: the binding's key, and what became of each action. Below
//! every other file of the controller, so that none of them imports another back.

use kube::ResourceExt;

use crate::crd::NacosBinding;
use crate::plan::Action;

/// `namespace/name`: how logs, metrics and the claims name a binding.
pub fn key(b: &NacosBinding) -> String {
    format!("{}/{}", b.namespace().unwrap_or_default(), b.name_any())
}

/// What became of one planned action.
#[derive(Debug, Clone, PartialEq)]
pub enum Written {
    /// Written and seen to take.
    Done,
    /// A DELETE Nacos answered but did not apply; `disabled` says whether the fallback took.
    Ineffective { disabled: bool },
    /// The second signal contradicted the cache: nothing was written.
    NotConfirmed(String),
    /// The write or its verification failed: nothing is assumed.
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub action: Action,
    pub result: Written,
}

impl Outcome {
    /// Taken offline, by the planned action or by the fallback.
    pub fn took_offline(&self) -> bool {
        self.action.kind.is_removal()
            && matches!(
                self.result,
                Written::Done | Written::Ineffective { disabled: true }
            )
    }
}
