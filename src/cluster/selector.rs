//! Label selector matching and the per-binding pod scope (selector + namespaces).
//!
//! A selector is compiled once into a [`LabelMatcher`] so that an invalid selector is an error the
//! controller can report, never a silent "matches nothing" (which would make every instance look orphaned).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

/// Why a label selector cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("label selector: unknown operator {operator:?} for key {key:?}")]
    UnknownOperator { key: String, operator: String },
    #[error("label selector: operator {operator} for key {key:?} needs at least one value")]
    MissingValues { key: String, operator: String },
    #[error("label selector: operator {operator} for key {key:?} takes no values")]
    UnexpectedValues { key: String, operator: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Self::Equals(key, value) => labels.get(key) == Some(value),
            Self::In(key, values) => labels.get(key).is_some_and(|v| values.contains(v)),
            // Kubernetes semantics: NotIn also matches when the key is absent.
            Self::NotIn(key, values) => labels.get(key).is_none_or(|v| !values.contains(v)),
            Self::Exists(key) => labels.contains_key(key),
            Self::DoesNotExist(key) => !labels.contains_key(key),
        }
    }

    fn from_expression(expr: &LabelSelectorRequirement) -> Result<Self, SelectorError> {
        let key = expr.key.clone();
        let values: BTreeSet<String> = expr.values.iter().flatten().cloned().collect();
        let operator = expr.operator.as_str();
        if !matches!(operator, "In" | "NotIn" | "Exists" | "DoesNotExist") {
            return Err(SelectorError::UnknownOperator {
                key,
                operator: operator.to_owned(),
            });
        }
        let needs_values = matches!(operator, "In" | "NotIn");
        if needs_values && values.is_empty() {
            return Err(SelectorError::MissingValues {
                key,
                operator: operator.to_owned(),
            });
        }
        if !needs_values && !values.is_empty() {
            return Err(SelectorError::UnexpectedValues {
                key,
                operator: operator.to_owned(),
            });
        }
        match operator {
            "In" => Ok(Self::In(key, values)),
            "NotIn" => Ok(Self::NotIn(key, values)),
            "Exists" => Ok(Self::Exists(key)),
            // Unknown operators were rejected above.
            _ => Ok(Self::DoesNotExist(key)),
        }
    }
}

/// A validated label selector. An empty selector matches every label set (Kubernetes semantics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelMatcher {
    requirements: Vec<Requirement>,
}

impl LabelMatcher {
    pub fn new(selector: &LabelSelector) -> Result<Self, SelectorError> {
        let mut requirements: Vec<Requirement> = selector
            .match_labels
            .iter()
            .flatten()
            .map(|(k, v)| Requirement::Equals(k.clone(), v.clone()))
            .collect();
        for expr in selector.match_expressions.iter().flatten() {
            requirements.push(Requirement::from_expression(expr)?);
        }
        Ok(Self { requirements })
    }

    /// Requirements are ANDed.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

/// Convenience: validate and match in one go.
pub fn selector_matches(
    selector: &LabelSelector,
    labels: &BTreeMap<String, String>,
) -> Result<bool, SelectorError> {
    Ok(LabelMatcher::new(selector)?.matches(labels))
}

/// The pods a binding cares about: a selector within a set of namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodScope {
    namespaces: BTreeSet<String>,
    matcher: LabelMatcher,
}

impl PodScope {
    /// `namespaces` empty means the binding's own namespace, as in the CRD.
    pub fn new(
        binding_namespace: &str,
        selector: &LabelSelector,
        namespaces: &[String],
    ) -> Result<Self, SelectorError> {
        let namespaces = if namespaces.is_empty() {
            BTreeSet::from([binding_namespace.to_owned()])
        } else {
            namespaces.iter().cloned().collect()
        };
        Ok(Self {
            namespaces,
            matcher: LabelMatcher::new(selector)?,
        })
    }

    pub fn namespaces(&self) -> &BTreeSet<String> {
        &self.namespaces
    }

    pub fn covers_namespace(&self, namespace: &str) -> bool {
        self.namespaces.contains(namespace)
    }

    /// Whether a pod with these labels in this namespace belongs to the binding.
    pub fn matches(&self, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
        self.covers_namespace(namespace) && self.matcher.matches(labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: Option<&[&str]>) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: values.map(|v| v.iter().map(|s| s.to_string()).collect()),
        }
    }

    fn selector(
        match_labels: &[(&str, &str)],
        exprs: Vec<LabelSelectorRequirement>,
    ) -> LabelSelector {
        LabelSelector {
            match_labels: Some(labels(match_labels)),
            match_expressions: Some(exprs),
        }
    }

    #[test]
    fn empty_selector_matches_everything() {
        let sel = LabelSelector::default();
        assert_eq!(selector_matches(&sel, &labels(&[])), Ok(true));
        assert_eq!(selector_matches(&sel, &labels(&[("a", "b")])), Ok(true));
    }

    #[test]
    fn match_labels_require_every_pair() {
        let sel = selector(&[("app", "orders"), ("tier", "web")], vec![]);
        assert_eq!(
            selector_matches(
                &sel,
                &labels(&[("app", "orders"), ("tier", "web"), ("x", "y")])
            ),
            Ok(true)
        );
        assert_eq!(
            selector_matches(&sel, &labels(&[("app", "orders")])),
            Ok(false)
        );
        assert_eq!(
            selector_matches(&sel, &labels(&[("app", "orders"), ("tier", "db")])),
            Ok(false)
        );
    }

    /// (operator, values, pod labels, expected match)
    type Case<'a> = (
        &'a str,
        Option<&'a [&'a str]>,
        &'a [(&'a str, &'a str)],
        bool,
    );

    #[test]
    fn operators_follow_kubernetes_semantics() {
        let cases: &[Case] = &[
            ("In", Some(&["a", "b"]), &[("k", "a")], true),
            ("In", Some(&["a", "b"]), &[("k", "c")], false),
            ("In", Some(&["a"]), &[], false),
            ("NotIn", Some(&["a"]), &[("k", "b")], true),
            ("NotIn", Some(&["a"]), &[("k", "a")], false),
            ("NotIn", Some(&["a"]), &[], true),
            ("Exists", None, &[("k", "")], true),
            ("Exists", None, &[("other", "x")], false),
            ("DoesNotExist", None, &[], true),
            ("DoesNotExist", None, &[("k", "x")], false),
        ];
        for (op, values, pod_labels, expected) in cases {
            let sel = selector(&[], vec![expr("k", op, *values)]);
            assert_eq!(
                selector_matches(&sel, &labels(pod_labels)),
                Ok(*expected),
                "{op} {values:?} on {pod_labels:?}"
            );
        }
    }

    #[test]
    fn labels_and_expressions_are_anded() {
        let sel = selector(
            &[("app", "orders")],
            vec![expr("track", "NotIn", Some(&["canary"]))],
        );
        assert_eq!(
            selector_matches(&sel, &labels(&[("app", "orders")])),
            Ok(true)
        );
        assert_eq!(
            selector_matches(&sel, &labels(&[("app", "orders"), ("track", "canary")])),
            Ok(false)
        );
    }

    #[test]
    fn invalid_selectors_are_errors_not_empty_matches() {
        let bad_op = selector(&[], vec![expr("k", "Like", Some(&["a"]))]);
        assert!(matches!(
            LabelMatcher::new(&bad_op),
            Err(SelectorError::UnknownOperator { .. })
        ));
        let in_without_values = selector(&[], vec![expr("k", "In", Some(&[]))]);
        assert!(matches!(
            LabelMatcher::new(&in_without_values),
            Err(SelectorError::MissingValues { .. })
        ));
        let exists_with_values = selector(&[], vec![expr("k", "Exists", Some(&["a"]))]);
        assert!(matches!(
            LabelMatcher::new(&exists_with_values),
            Err(SelectorError::UnexpectedValues { .. })
        ));
    }

    #[test]
    fn scope_defaults_to_the_binding_namespace() {
        let sel = selector(&[("app", "orders")], vec![]);
        let own = PodScope::new("shop", &sel, &[]).unwrap();
        assert!(own.matches("shop", &labels(&[("app", "orders")])));
        assert!(!own.matches("other", &labels(&[("app", "orders")])));

        let listed = PodScope::new("shop", &sel, &["a".into(), "b".into()]).unwrap();
        assert!(!listed.matches("shop", &labels(&[("app", "orders")])));
        assert!(listed.matches("b", &labels(&[("app", "orders")])));
        assert!(!listed.matches("b", &labels(&[("app", "billing")])));
    }
}
