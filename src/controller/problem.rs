//! Why a pass could not do its whole job, and the condition and reason each problem turns False.
//! Below the report and the status, which show problems as conditions and Warning Events.

use crate::nacos::NacosError;

/// Why a pass could not do its whole job.
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    InvalidSpec(String),
    /// A Secret the spec names does not exist (SpecValid=False).
    SecretNotFound(String),
    NacosUnavailable(String),
    AuthFailed(String),
    /// The server lists its namespaces and `spec.nacos.namespace` is not among them.
    NamespaceNotFound(String),
    CacheNotSynced(String),
}

impl Problem {
    pub fn from_nacos(e: &NacosError) -> Self {
        match e.kind() {
            "auth" => Problem::AuthFailed(e.to_string()),
            "config" => Problem::InvalidSpec(e.to_string()),
            _ => Problem::NacosUnavailable(e.to_string()),
        }
    }

    /// The condition it turns False, and the reason used there and in its Warning Event.
    pub fn condition_and_reason(&self) -> (&'static str, &'static str) {
        match self {
            Problem::InvalidSpec(_) => ("SpecValid", "InvalidSpec"),
            Problem::SecretNotFound(_) => ("SpecValid", "SecretNotFound"),
            Problem::NacosUnavailable(_) => ("NacosReachable", "NacosUnavailable"),
            Problem::AuthFailed(_) => ("NacosReachable", "AuthFailed"),
            Problem::NamespaceNotFound(_) => ("NacosReachable", "NamespaceNotFound"),
            Problem::CacheNotSynced(_) => ("CacheSynced", "NotSynced"),
        }
    }

    /// The reason of its Warning Event (the condition's reason, except for the cache).
    pub fn event_reason(&self) -> &'static str {
        match self {
            Problem::CacheNotSynced(_) => "CacheNotSynced",
            other => other.condition_and_reason().1,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Problem::InvalidSpec(m)
            | Problem::SecretNotFound(m)
            | Problem::NacosUnavailable(m)
            | Problem::AuthFailed(m)
            | Problem::NamespaceNotFound(m)
            | Problem::CacheNotSynced(m) => m,
        }
    }
}

/// The (reason, message) of condition `type_` among `problems`: the most telling problem of that
/// condition wins (credentials over reachability over a missing namespace).
pub(super) fn failing(problems: &[Problem], type_: &str) -> Option<(&'static str, String)> {
    let rank = |p: &Problem| match p {
        Problem::AuthFailed(_) => 0,
        Problem::NacosUnavailable(_) => 1,
        _ => 2,
    };
    problems
        .iter()
        .filter(|p| p.condition_and_reason().0 == type_)
        .min_by_key(|p| rank(p))
        .map(|p| (p.condition_and_reason().1, p.message().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_problem_names_its_condition_and_reason() {
        let secret = Problem::SecretNotFound("Secret shop/nacos-auth not found".into());
        let ns = Problem::NamespaceNotFound("Nacos namespace \"x\" does not exist".into());
        let down = Problem::NacosUnavailable("Nacos unreachable".into());
        let auth = Problem::AuthFailed("denied".into());
        let cache = Problem::CacheNotSynced("pods".into());
        assert_eq!(
            secret.condition_and_reason(),
            ("SpecValid", "SecretNotFound")
        );
        assert_eq!(secret.event_reason(), "SecretNotFound");
        assert_eq!(
            ns.condition_and_reason(),
            ("NacosReachable", "NamespaceNotFound")
        );
        assert_eq!(ns.event_reason(), "NamespaceNotFound");
        assert_eq!(cache.condition_and_reason(), ("CacheSynced", "NotSynced"));
        assert_eq!(cache.event_reason(), "CacheNotSynced");

        assert_eq!(
            failing(std::slice::from_ref(&secret), "SpecValid"),
            Some((
                "SecretNotFound",
                "Secret shop/nacos-auth not found".to_string()
            ))
        );
        assert_eq!(
            failing(std::slice::from_ref(&secret), "NacosReachable"),
            None
        );
        // Credentials explain more than reachability, which explains more than a namespace.
        let all = vec![ns.clone(), down.clone(), auth.clone()];
        assert_eq!(
            failing(&all, "NacosReachable").map(|f| f.0),
            Some("AuthFailed")
        );
        let two = vec![ns.clone(), down];
        assert_eq!(
            failing(&two, "NacosReachable").map(|f| f.0),
            Some("NacosUnavailable")
        );
        assert_eq!(
            failing(&[ns], "NacosReachable").map(|f| f.0),
            Some("NamespaceNotFound")
        );
        assert_eq!(
            failing(&[cache], "CacheSynced").map(|f| f.0),
            Some("NotSynced")
        );
    }
}
