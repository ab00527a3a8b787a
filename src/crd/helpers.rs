//! The pure helpers the controller needs to read a spec: the removal budget, service matching, the
//! port filter, the scope, and `check()` for bindings stored under an older CRD.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::resource::NacosBindingSpec;
use super::spec::{PodsSpec, PolicySpec, ScopeSpec, ServiceSelector};

/// A spec value the API server should have rejected (e.g. the CRD in the cluster is older than the
/// operator). Reported through the SpecValid condition and an InvalidSpec event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// policy.maxRemovals is neither a count nor a percentage from 0% to 100%.
    #[error(
        "policy.maxRemovals {0:?} must be a count of 0 or more or a percentage from 0% to 100%"
    )]
    MaxRemovals(String),
    /// pods.port is neither 1-65535 nor a port name.
    #[error("pods.port {0:?} must be a number from 1 to 65535 or a container port name")]
    Port(String),
    /// A scope.cidrs entry is not a CIDR.
    #[error("scope.cidrs entry {0:?} is not a CIDR such as 10.244.0.0/16")]
    Cidr(String),
}

/// The removal budget per service per window, parsed from `policy.maxRemovals`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxRemovals {
    /// At most this many removals.
    Count(u32),
    /// At most this percentage (0-100) of the service's instances (see [`MaxRemovals::limit`]).
    Percent(u32),
}

impl MaxRemovals {
    /// Parse an int-or-string: a non-negative integer, or a string `"N%"` with N from 0 to 100.
    pub fn parse(value: &IntOrString) -> Result<Self, SpecError> {
        match value {
            IntOrString::Int(n) => u32::try_from(*n)
                .map(MaxRemovals::Count)
                .map_err(|_| SpecError::MaxRemovals(n.to_string())),
            IntOrString::String(s) => {
                let bad = || SpecError::MaxRemovals(s.clone());
                let digits = s.strip_suffix('%').ok_or_else(bad)?;
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                match digits.parse::<u32>() {
                    Ok(p) if p <= 100 => Ok(MaxRemovals::Percent(p)),
                    _ => Err(bad()),
                }
            }
        }
    }

    /// The number of removals allowed in one window for a service with `total` instances.
    /// Percentages round down (the cautious side) but allow at least 1 when above 0%, so a
    /// one-instance service can still lose its dead instance; 0% is always 0.
    pub fn limit(self, total: usize) -> usize {
        match self {
            MaxRemovals::Count(n) => n as usize,
            MaxRemovals::Percent(0) => 0,
            MaxRemovals::Percent(p) => (total.saturating_mul(p.min(100) as usize) / 100).max(1),
        }
    }

    /// Whether this budget can ever hold a removal back. 100% cannot: it allows every instance a
    /// service has, whatever was removed earlier in the window, so no record of the spent budget
    /// changes a decision.
    pub fn can_hold(self) -> bool {
        self != MaxRemovals::Percent(100)
    }
}

impl fmt::Display for MaxRemovals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaxRemovals::Count(n) => write!(f, "{n}"),
            MaxRemovals::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl PolicySpec {
    /// The parsed removal budget.
    pub fn max_removals(&self) -> Result<MaxRemovals, SpecError> {
        MaxRemovals::parse(&self.max_removals)
    }
}

impl ServiceSelector {
    /// Whether this entry governs the Nacos service called `service_name` (group not considered: compare
    /// `self.group` separately). `name` matches exactly; `namePattern` is a glob with `*` and `?`.
    /// An entry with neither (rejected by the API server) governs nothing.
    pub fn governs(&self, service_name: &str) -> bool {
        match (&self.name, &self.name_pattern) {
            (Some(name), _) => name == service_name,
            (None, Some(pattern)) => glob_match(pattern, service_name),
            (None, None) => false,
        }
    }

    /// Whether this entry governs `service_name` in `group`.
    pub fn governs_in(&self, group: &str, service_name: &str) -> bool {
        self.group == group && self.governs(service_name)
    }
}

/// Glob matching over whole strings: `*` matches any run of characters (including none), `?` exactly
/// one character; everything else matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    // Position after the last `*` seen, and the text position it is currently matched up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi + 1, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((after_star, matched_to)) => {
                    // Let the last `*` swallow one more character and retry.
                    pi = after_star;
                    ti = matched_to + 1;
                    star = Some((after_star, matched_to + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The instance port filter of `pods.port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSelector {
    /// A port number.
    Number(u16),
    /// The name of a container port of the matching pods.
    Name(String),
}

impl PodsSpec {
    /// The parsed port filter, or `None` when every port matches.
    pub fn port_selector(&self) -> Result<Option<PortSelector>, SpecError> {
        match &self.port {
            None => Ok(None),
            Some(IntOrString::Int(n)) => match u16::try_from(*n) {
                Ok(p) if p >= 1 => Ok(Some(PortSelector::Number(p))),
                _ => Err(SpecError::Port(n.to_string())),
            },
            Some(IntOrString::String(s)) => {
                let valid = !s.is_empty()
                    && s.len() <= 15
                    && s.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && s.bytes().any(|b| b.is_ascii_lowercase())
                    && !s.starts_with('-')
                    && !s.ends_with('-')
                    && !s.contains("--");
                if valid {
                    Ok(Some(PortSelector::Name(s.clone())))
                } else {
                    Err(SpecError::Port(s.clone()))
                }
            }
        }
    }
}

impl ScopeSpec {
    /// The parsed CIDRs (empty means: derive the scope from the Nodes).
    pub fn networks(&self) -> Result<Vec<IpNet>, SpecError> {
        self.cidrs
            .iter()
            .map(|c| c.parse::<IpNet>().map_err(|_| SpecError::Cidr(c.clone())))
            .collect()
    }
}

impl NacosBindingSpec {
    /// The first service entry that governs `service_name` in `group`, if any.
    pub fn governing(&self, group: &str, service_name: &str) -> Option<&ServiceSelector> {
        self.services
            .iter()
            .find(|s| s.governs_in(group, service_name))
    }

    /// No `scope.cidrs`: the scope is derived from the Nodes (their podCIDRs and InternalIPs).
    pub fn default_scope(&self) -> bool {
        self.scope.as_ref().is_none_or(|s| s.cidrs.is_empty())
    }

    /// The explicit scope CIDRs; empty when the scope is to be derived from the Nodes.
    pub fn scope_networks(&self) -> Result<Vec<IpNet>, SpecError> {
        match &self.scope {
            Some(scope) => scope.networks(),
            None => Ok(Vec::new()),
        }
    }

    /// Checks the values the API server validates, for bindings stored under an older CRD.
    /// Returns every problem found.
    pub fn check(&self) -> Result<(), Vec<SpecError>> {
        let mut errors = Vec::new();
        if let Err(e) = self.policy.max_removals() {
            errors.push(e);
        }
        if let Err(e) = self.pods.port_selector() {
            errors.push(e);
        }
        if let Err(e) = self.scope_networks() {
            errors.push(e);
        }

        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// Whether `ip` falls inside any of `networks`.
pub fn in_scope(networks: &[IpNet], ip: IpAddr) -> bool {
    networks.iter().any(|n| n.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::spec::DEFAULT_GROUP;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    fn sel(name: Option<&str>, pattern: Option<&str>) -> ServiceSelector {
        ServiceSelector {
            name: name.map(str::to_string),
            name_pattern: pattern.map(str::to_string),
            group: DEFAULT_GROUP.to_string(),
            clusters: vec![],
        }
    }
    #[test]
    fn max_removals_parsing() {
        let s = |v: &str| MaxRemovals::parse(&IntOrString::String(v.to_string()));
        let i = |v: i32| MaxRemovals::parse(&IntOrString::Int(v));
        assert_eq!(i(0), Ok(MaxRemovals::Count(0)));
        assert_eq!(i(5), Ok(MaxRemovals::Count(5)));
        assert!(i(-1).is_err());
        assert_eq!(s("0%"), Ok(MaxRemovals::Percent(0)));
        assert_eq!(s("50%"), Ok(MaxRemovals::Percent(50)));
        assert_eq!(s("100%"), Ok(MaxRemovals::Percent(100)));
        for bad in [
            "101%", "150%", "%", "50", "5 %", "-5%", "+5%", "50%%", "abc", "", "1e2%",
        ] {
            assert!(s(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(
            s("101%").map_err(|e| e.to_string()),
            Err("policy.maxRemovals \"101%\" must be a count of 0 or more or a percentage from 0% to 100%".to_string())
        );
        assert_eq!(MaxRemovals::Percent(50).to_string(), "50%");
        assert_eq!(MaxRemovals::Count(3).to_string(), "3");
    }

    #[test]
    fn max_removals_limit() {
        assert_eq!(MaxRemovals::Count(5).limit(2), 5);
        assert_eq!(MaxRemovals::Percent(50).limit(1), 1);
        assert_eq!(MaxRemovals::Percent(50).limit(4), 2);
        assert_eq!(MaxRemovals::Percent(50).limit(5), 2);
        assert_eq!(MaxRemovals::Percent(0).limit(100), 0);
        assert_eq!(MaxRemovals::Percent(100).limit(7), 7);
        assert_eq!(MaxRemovals::Percent(10).limit(0), 1);
        assert_eq!(MaxRemovals::Percent(100).limit(1_000_000), 1_000_000);
        assert!(!MaxRemovals::Percent(100).can_hold());
        assert!(MaxRemovals::Percent(99).can_hold());
        assert!(MaxRemovals::Count(1_000_000).can_hold());
    }

    #[test]
    fn glob_matching() {
        let yes = [
            ("orders", "orders"),
            ("orders-*", "orders-"),
            ("orders-*", "orders-eu-1"),
            ("*", ""),
            ("*", "anything"),
            ("o?ders", "orders"),
            ("*-api", "payments-api"),
            ("*a*b*", "xxaxxbxx"),
            ("a*b*c", "abbbc"),
            ("**", "x"),
            ("??", "日本"),
            ("a*a*a", "aaaaa"),
        ];
        let no = [
            ("orders", "orders-1"),
            ("orders-*", "orders"),
            ("o?ders", "oders"),
            ("?", ""),
            ("*-api", "payments-apis"),
            ("a*b*c", "abcx"),
            ("orders", "Orders"),
            ("a*a*a", "aa"),
        ];
        for (p, t) in yes {
            assert!(glob_match(p, t), "{p:?} should match {t:?}");
        }
        for (p, t) in no {
            assert!(!glob_match(p, t), "{p:?} should not match {t:?}");
        }
    }

    #[test]
    fn governs_by_name_or_pattern() {
        assert!(sel(Some("orders"), None).governs("orders"));
        assert!(!sel(Some("orders"), None).governs("orders-eu"));
        // `name` is exact even when it contains glob characters.
        assert!(!sel(Some("orders-*"), None).governs("orders-eu"));
        assert!(sel(None, Some("orders-*")).governs("orders-eu"));
        assert!(!sel(None, Some("orders-*")).governs("payments"));
        assert!(!sel(None, None).governs("orders"));
        assert!(sel(Some("orders"), None).governs_in(DEFAULT_GROUP, "orders"));
        assert!(!sel(Some("orders"), None).governs_in("OTHER", "orders"));
    }

    #[test]
    fn port_selector_parsing() {
        let pods = |port: Option<IntOrString>| PodsSpec {
            selector: LabelSelector::default(),
            namespaces: vec![],
            port,
        };
        let name = |s: &str| pods(Some(IntOrString::String(s.to_string()))).port_selector();
        assert_eq!(
            pods(Some(IntOrString::Int(1))).port_selector(),
            Ok(Some(PortSelector::Number(1)))
        );
        assert_eq!(
            pods(Some(IntOrString::Int(65535))).port_selector(),
            Ok(Some(PortSelector::Number(65535)))
        );
        assert!(pods(Some(IntOrString::Int(0))).port_selector().is_err());
        assert!(pods(Some(IntOrString::Int(65536))).port_selector().is_err());
        assert_eq!(
            name("http"),
            Ok(Some(PortSelector::Name("http".to_string())))
        );
        assert_eq!(
            name("grpc-2"),
            Ok(Some(PortSelector::Name("grpc-2".to_string())))
        );
        for bad in [
            "",
            "HTTP",
            "-http",
            "http-",
            "a--b",
            "1234",
            "averyveryverylongname",
        ] {
            assert!(name(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
