//! Stage 1 of a pass: the binding's spec checked where the schema cannot, and what it references
//! read (Secrets, the Nacos client built from them, the memory of earlier passes).

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};
use tracing::warn;

use super::context::{BindingState, Context};
use super::inputs::{self, InputError, SecretData};
use super::outcome::key;
use super::problem::Problem;
use super::request_metrics::RequestMetrics;
use super::status::memory_from_status;
use super::stop::{ReconcileError, Stop};
use crate::cluster::PodScope;
use crate::crd::NacosBinding;
use crate::nacos::{NacosClient, NacosConfig, NacosError};
use crate::plan::Memory;

/// What a pass works with besides the cluster view and the registry.
pub struct Inputs {
    pub pod_scope: PodScope,
    pub nacos: Arc<NacosClient>,
    /// What earlier passes decided; on this process's first pass, what status recorded.
    pub memory: Memory,
    /// What the pass depends on besides the cluster and the registry: a change makes it full.
    pub fingerprint: u64,
    pub resync: Duration,
}

/// How often a binding is passed over in full.
pub fn resync_period(b: &NacosBinding) -> Duration {
    Duration::from_secs(b.spec.resync_seconds.max(5).into())
}

pub async fn dereference(
    ctx: &Context,
    b: &NacosBinding,
    state: &mut BindingState,
) -> Result<Inputs, Stop> {
    let ns = b.namespace().ok_or(ReconcileError::NoNamespace)?;
    if let Err(errors) = b.spec.check() {
        let msg = errors.iter().map(ToString::to_string).collect::<Vec<_>>();
        return Err(Stop::spec(msg.join("; ")));
    }
    let pod_scope =
        PodScope::new(&ns, &b.spec.pods.selector, &b.spec.pods.namespaces).map_err(Stop::spec)?;
    let secrets = read_secrets(ctx, &ns, b).await?;
    let cfg = inputs::nacos_config(&ns, &b.spec, &secrets).map_err(Stop::spec)?;
    let insecure = cfg.tls.insecure_skip_verify;
    let (nacos, fresh) = nacos_client(state, cfg, &secrets, ctx).map_err(Stop::spec)?;
    // Once per client (start-up, spec or Secret change), not on every pass.
    if fresh && insecure {
        warn!(
            binding = %key(b),
            "tls.insecureSkipVerify is set: the Nacos server's certificate is not verified"
        );
    }
    Ok(Inputs {
        pod_scope,
        nacos,
        memory: state
            .memory
            .clone()
            .unwrap_or_else(|| memory_from_status(b)),
        fingerprint: pass_fingerprint(b, state),
        resync: resync_period(b),
    })
}

/// Reads the Secrets the binding references, in its own namespace only.
async fn read_secrets(ctx: &Context, ns: &str, b: &NacosBinding) -> Result<SecretData, Stop> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let read = |name: &str| {
        let (api, name) = (api.clone(), name.to_string());
        async move {
            match api.get_opt(&name).await {
                Ok(Some(s)) => Ok(s
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect::<BTreeMap<_, _>>()),
                Ok(None) => {
                    let missing = InputError::SecretMissing {
                        namespace: ns.to_string(),
                        name,
                    };
                    Err(Stop::soon(secret_problem(b, &missing)))
                }
                Err(e) => Err(ReconcileError::SecretRead(name, e).into()),
            }
        }
    };
    let mut data = SecretData::default();
    if let Some(r) = &b.spec.nacos.credentials_secret_ref {
        data.credentials = Some(read(&r.name).await?);
    }
    if let Some(r) = b
        .spec
        .nacos
        .tls
        .as_ref()
        .and_then(|t| t.ca_secret_ref.as_ref())
    {
        data.ca = Some(read(&r.name).await?);
    }
    Ok(data)
}

/// What a Secret that cannot be used means: without its credentials Secret the operator cannot log
/// in, which users look for under `AuthFailed`; another missing Secret (the CA) is `SecretNotFound`;
/// anything else (missing keys) is a spec problem.
fn secret_problem(b: &NacosBinding, e: &InputError) -> Problem {
    match (e, &b.spec.nacos.credentials_secret_ref) {
        (InputError::SecretMissing { name, .. }, Some(r)) if *name == r.name => {
            Problem::AuthFailed(format!("{e}: no credentials to log in to Nacos with"))
        }
        (InputError::SecretMissing { .. }, _) => Problem::SecretNotFound(format!(
            "{e}: create it, or correct the Secret name in spec.nacos"
        )),
        _ => Problem::InvalidSpec(e.to_string()),
    }
}

/// The Nacos client for this configuration, reused while the configuration (Secrets included) is
/// unchanged so the login token is reused too. `true` when it was built just now.
fn nacos_client(
    state: &mut BindingState,
    cfg: NacosConfig,
    secrets: &SecretData,
    ctx: &Context,
) -> Result<(Arc<NacosClient>, bool), NacosError> {
    // Debug output redacts secrets, so hash the Secret data too: a rotated password makes a new client.
    let mut h = DefaultHasher::new();
    format!("{cfg:?}").hash(&mut h);
    secrets.credentials.hash(&mut h);
    secrets.ca.hash(&mut h);
    let fp = h.finish();
    if let Some((old, c)) = &state.nacos {
        if *old == fp {
            return Ok((c.clone(), false));
        }
    }
    let c = Arc::new(NacosClient::observed(
        cfg,
        Arc::new(RequestMetrics(ctx.metrics.clone())),
    )?);
    state.nacos = Some((fp, c.clone()));
    Ok((c, true))
}

/// What a pass depends on besides the cluster and the registry: a change makes the next pass full.
/// Annotations count whole (the approval among them), so any annotation forces a full pass.
fn pass_fingerprint(b: &NacosBinding, state: &BindingState) -> u64 {
    let mut h = DefaultHasher::new();
    b.metadata.generation.hash(&mut h);
    b.annotations().hash(&mut h);
    state.nacos.as_ref().map(|(fp, _)| *fp).hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(credentials: Option<&str>) -> NacosBinding {
        let mut spec = serde_json::json!({
            "nacos": {"serverAddr": ["http://127.0.0.1:8848"]},
            "services": [{"name": "orders"}],
            "pods": {"selector": {"matchLabels": {"app": "orders"}}}
        });
        if let Some(name) = credentials {
            spec["nacos"]["credentialsSecretRef"] = serde_json::json!({"name": name});
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "nacos-reconciler.io/v1alpha1", "kind": "NacosBinding",
            "metadata": {"name": "orders", "namespace": "shop"},
            "spec": spec
        }))
        .unwrap()
    }

    fn missing(name: &str) -> InputError {
        InputError::SecretMissing {
            namespace: "shop".into(),
            name: name.into(),
        }
    }

    #[test]
    fn a_missing_credentials_secret_is_an_auth_failure() {
        let b = binding(Some("nacos-auth"));
        match secret_problem(&b, &missing("nacos-auth")) {
            Problem::AuthFailed(m) => assert!(m.contains("shop/nacos-auth"), "{m}"),
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn other_secret_problems_name_the_secret_or_the_spec() {
        let b = binding(Some("nacos-auth"));
        assert!(matches!(
            secret_problem(&b, &missing("nacos-ca")),
            Problem::SecretNotFound(_)
        ));
        let keys = InputError::SecretKeys {
            namespace: "shop".into(),
            name: "nacos-auth".into(),
            need: "username and password",
        };
        assert!(matches!(secret_problem(&b, &keys), Problem::InvalidSpec(_)));
        assert!(matches!(
            secret_problem(&binding(None), &missing("nacos-auth")),
            Problem::SecretNotFound(_)
        ));
    }
}
