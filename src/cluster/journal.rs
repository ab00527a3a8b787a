//! Which IPs the view's facts changed on, and since when: a pass that judged the cluster at one
//! point asks what changed since, and judges again only the services with instances there.

use std::collections::{HashSet, VecDeque};
use std::net::IpAddr;

/// Beyond this many remembered changes the oldest are forgotten; a reader behind them is told that
/// everything changed.
const MAX_REMEMBERED: usize = 65_536;

/// What changed since a point of the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    /// Anything may have (a node, a relist, the sync state, or too long ago to say).
    All,
    /// Only the facts about these IPs.
    Ips(HashSet<IpAddr>),
}

#[derive(Debug, Default)]
pub struct ChangeJournal {
    /// Bumped by every change; a reader keeps the value it read.
    seq: u64,
    /// The last change that may have touched anything.
    all_at: u64,
    /// Changes on one IP, oldest first.
    ips: VecDeque<(u64, IpAddr)>,
}

impl ChangeJournal {
    /// The current point: every later change has a greater one.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The facts about these IPs changed.
    pub fn touch(&mut self, ips: impl IntoIterator<Item = IpAddr>) {
        self.seq += 1;
        for ip in ips {
            self.ips.push_back((self.seq, ip));
        }
        while self.ips.len() > MAX_REMEMBERED {
            if let Some((seq, _)) = self.ips.pop_front() {
                self.all_at = self.all_at.max(seq);
            }
        }
    }

    /// Anything may have changed.
    pub fn touch_all(&mut self) {
        self.seq += 1;
        self.all_at = self.seq;
        self.ips.clear();
    }

    /// What changed after point `seq`.
    pub fn since(&self, seq: u64) -> Changed {
        if self.all_at > seq {
            return Changed::All;
        }
        Changed::Ips(
            self.ips
                .iter()
                .rev()
                .take_while(|(at, _)| *at > seq)
                .map(|(_, ip)| *ip)
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn ips(list: &[&str]) -> Changed {
        Changed::Ips(list.iter().map(|s| ip(s)).collect())
    }

    #[test]
    fn a_reader_sees_the_ips_changed_after_its_point_only() {
        let mut j = ChangeJournal::default();
        assert_eq!(j.since(0), ips(&[]));
        j.touch([ip("10.0.0.1"), ip("10.0.0.2")]);
        let mid = j.seq();
        j.touch([ip("10.0.0.3")]);
        assert_eq!(j.since(0), ips(&["10.0.0.1", "10.0.0.2", "10.0.0.3"]));
        assert_eq!(j.since(mid), ips(&["10.0.0.3"]));
        assert_eq!(j.since(j.seq()), ips(&[]));
    }

    #[test]
    fn a_change_to_anything_covers_every_reader_behind_it() {
        let mut j = ChangeJournal::default();
        j.touch([ip("10.0.0.1")]);
        let before = j.seq();
        j.touch_all();
        let after = j.seq();
        j.touch([ip("10.0.0.2")]);
        assert_eq!(j.since(before), Changed::All);
        assert_eq!(j.since(after), ips(&["10.0.0.2"]));
    }

    #[test]
    fn a_reader_behind_what_was_forgotten_is_told_everything_changed() {
        let mut j = ChangeJournal::default();
        j.touch([ip("10.0.0.1")]);
        let old = j.seq();
        j.touch([ip("10.0.0.2")]);
        let recent = j.seq();
        for _ in 0..MAX_REMEMBERED {
            j.touch([ip("10.0.0.3")]);
        }
        assert_eq!(j.since(old), Changed::All);
        assert_eq!(j.since(recent), ips(&["10.0.0.3"]));
    }
}
