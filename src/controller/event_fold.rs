//! Which actions' Events are published on their own and which fold into one combined Event.
//!
//! A mass removal would otherwise write one Event per instance to the binding: 2,000 of them make
//! `kubectl describe` unreadable and add as many writes to an API server that is already busy
//! deleting the pods. Like client-go's event aggregator, the first few subjects of a kind (binding,
//! type, reason) in a window get Events of their own; the rest count into one combined Event's
//! series. Every action stays in the operator's log and the actions metric, each removal in
//! `status.removals`.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// Subjects of one kind that get an Event of their own per window.
pub const OWN_EVENTS_PER_WINDOW: usize = 10;
/// How long a window lasts from its first Event.
pub const FOLD_WINDOW: Duration = Duration::from_secs(10 * 60);

/// What to do with an action's Event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Publish it as the subject's own Event (a repeat counts into that Event's series).
    Own,
    /// Count it into the kind's combined Event.
    Fold,
    /// Already counted into the combined Event in this window: nothing to publish.
    Counted,
}

/// The combined Event of a kind's window, once published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Combined {
    /// The window it belongs to (its start), so a write does not land in a later window.
    pub window: Instant,
    /// The Event's name, once created.
    pub name: Option<String>,
    /// Subjects folded into it so far.
    pub count: i32,
}

struct Window {
    started: Instant,
    own: HashSet<u64>,
    folded: HashSet<u64>,
    combined_name: Option<String>,
}

/// Per kind, the current window's subjects.
#[derive(Default)]
pub struct EventFolds {
    windows: HashMap<u64, Window>,
}

impl EventFolds {
    /// Decides about one Event of `kind` about `subject`, and remembers it.
    pub fn admit(&mut self, kind: u64, subject: u64, now: Instant) -> Admit {
        self.windows
            .retain(|_, w| now.saturating_duration_since(w.started) < FOLD_WINDOW);
        let w = self.windows.entry(kind).or_insert_with(|| Window {
            started: now,
            own: HashSet::new(),
            folded: HashSet::new(),
            combined_name: None,
        });
        if w.own.contains(&subject) {
            Admit::Own
        } else if w.folded.contains(&subject) {
            Admit::Counted
        } else if w.own.len() < OWN_EVENTS_PER_WINDOW {
            w.own.insert(subject);
            Admit::Own
        } else {
            w.folded.insert(subject);
            Admit::Fold
        }
    }

    /// The kind's combined Event as it stands, if its window is still open and folded anything.
    pub fn combined(&self, kind: u64, now: Instant) -> Option<Combined> {
        let w = self.windows.get(&kind)?;
        if w.folded.is_empty() || now.saturating_duration_since(w.started) >= FOLD_WINDOW {
            return None;
        }
        Some(Combined {
            window: w.started,
            name: w.combined_name.clone(),
            count: i32::try_from(w.folded.len()).unwrap_or(i32::MAX),
        })
    }

    /// Records the name of the combined Event created for the window that started at `window`.
    pub fn named(&mut self, kind: u64, window: Instant, name: String) {
        if let Some(w) = self.windows.get_mut(&kind).filter(|w| w.started == window) {
            w.combined_name = Some(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admit_all(
        f: &mut EventFolds,
        kind: u64,
        subjects: std::ops::Range<u64>,
        now: Instant,
    ) -> Vec<Admit> {
        subjects.map(|s| f.admit(kind, s, now)).collect()
    }

    #[test]
    fn the_first_subjects_get_own_events_and_the_rest_fold() {
        let mut f = EventFolds::default();
        let t = Instant::now();
        let got = admit_all(&mut f, 1, 0..25, t);
        assert!(got[..OWN_EVENTS_PER_WINDOW]
            .iter()
            .all(|a| *a == Admit::Own));
        assert!(got[OWN_EVENTS_PER_WINDOW..]
            .iter()
            .all(|a| *a == Admit::Fold));
        let c = f.combined(1, t).expect("a combined event");
        assert_eq!(c.count, 15);
        assert_eq!(c.name, None);
        assert_eq!(c.window, t);
    }

    #[test]
    fn repeats_keep_their_place_and_are_not_counted_twice() {
        let mut f = EventFolds::default();
        let t = Instant::now();
        admit_all(&mut f, 1, 0..12, t);
        // A repeat of an own subject is published again (into its series), a repeat of a folded
        // one is already counted.
        assert_eq!(f.admit(1, 3, t), Admit::Own);
        assert_eq!(f.admit(1, 11, t), Admit::Counted);
        assert_eq!(f.combined(1, t).map(|c| c.count), Some(2));
    }

    #[test]
    fn kinds_are_counted_apart() {
        let mut f = EventFolds::default();
        let t = Instant::now();
        admit_all(&mut f, 1, 0..10, t);
        assert_eq!(f.admit(2, 100, t), Admit::Own);
        assert_eq!(f.combined(2, t), None, "nothing folded for kind 2");
        assert_eq!(f.admit(1, 100, t), Admit::Fold);
    }

    #[test]
    fn a_new_window_starts_after_the_old_one_closes() {
        let mut f = EventFolds::default();
        let t = Instant::now();
        admit_all(&mut f, 1, 0..12, t);
        f.named(1, t, "orders.1".into());
        assert_eq!(
            f.combined(1, t + Duration::from_secs(1))
                .and_then(|c| c.name),
            Some("orders.1".into())
        );
        let later = t + FOLD_WINDOW;
        assert_eq!(f.combined(1, later), None, "the old window is closed");
        assert_eq!(f.admit(1, 11, later), Admit::Own, "own Events again");
        // A name for the closed window does not stick to the new one.
        f.named(1, t, "orders.1".into());
        admit_all(&mut f, 1, 20..40, later);
        let c = f.combined(1, later).expect("combined");
        assert_eq!((c.name, c.window), (None, later));
    }
}
