//! Why Nacos still serves a stale instance (issue 19), in words a user can act on: the causes the
//! Nacos maintainers name each time the question comes up, told apart by what the listing and the
//! operator's memory show. Pure.

use chrono::{DateTime, Utc};

use crate::model::Instance;

use super::memory::Memory;

/// Why Nacos still lists `instance` (stale, enabled) for consumers.
pub(super) fn still_served(instance: &Instance, memory: &Memory, now: DateTime<Utc>) -> String {
    let k = &instance.key;
    if let Some(at) = memory.deregistered.get(k) {
        let after = (now - *at).num_seconds().max(0);
        return format!(
            "registered again {after}s after the operator deregistered it: something still sends \
             beats for {}:{} or holds its gRPC connection",
            instance.listed_ip, k.port
        );
    }
    if memory.ineffective.contains(k) {
        return "a deregistration did not take: a live client owns it (a gRPC connection, or a \
                1.x client's beats)"
            .into();
    }
    if !instance.ephemeral {
        return "persistent: Nacos never removes these by itself".into();
    }
    EPHEMERAL.into()
}

/// The cause of an ephemeral instance nothing else is known about.
pub const EPHEMERAL: &str =
    "ephemeral: Nacos keeps it while its client's gRPC connection (2.x) or beats (1.x) last";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests::{inst, t};

    #[test]
    fn each_cause_in_its_own_words() {
        let eph = inst("10.1.0.7");
        let mut persistent = inst("10.1.0.8");
        persistent.ephemeral = false;
        let none = Memory::default();
        assert_eq!(still_served(&eph, &none, t(0)), EPHEMERAL);
        assert_eq!(
            still_served(&persistent, &none, t(0)),
            "persistent: Nacos never removes these by itself"
        );
        let mut m = Memory::default();
        m.mark_ineffective(&eph.key);
        assert!(still_served(&eph, &m, t(0)).starts_with("a deregistration did not take"));
        // A deregistration on record wins: it says how long the client took to come back.
        m.record_deregistration(&eph.key, t(-4));
        assert_eq!(
            still_served(&eph, &m, t(0)),
            "registered again 4s after the operator deregistered it: something still sends beats \
             for 10.1.0.7:8080 or holds its gRPC connection"
        );
    }
}
