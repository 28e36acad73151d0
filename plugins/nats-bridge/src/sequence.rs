//! Loss and duplicate detection on import. Every exporting bridge numbers
//! its messages per subject (1, 2, 3, ...) under an origin id unique to that
//! run of that bridge, so an importer that sees every message of a subject
//! (no queue group) can tell a gap (lost in transit, or dropped by the
//! exporter's full buffer) from a duplicate (a JetStream redelivery, or two
//! overlapping import patterns).
//!
//! A gap is remembered as a hole: a late message (JetStream redelivers out of
//! order) fills it and is delivered, not taken for a duplicate. `missed` is
//! the number of sequence numbers skipped and not received so far.

use std::collections::{HashMap, VecDeque};

/// Holes remembered per subject; older ones stay counted as missed, but a
/// message filling one of them would then be taken for a duplicate.
const MAX_HOLES: usize = 1024;
/// Subjects tracked at most; past this everything is forgotten at once (the
/// next message of each subject starts tracking afresh) to bound memory.
const MAX_TRACKED: usize = 65_536;

/// What to do with an imported message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not seen before: deliver it.
    Deliver,
    /// Seen before: skip it.
    Duplicate,
}

#[derive(Debug)]
struct Track {
    /// The sequence number after the highest one seen.
    next: u64,
    /// Skipped ranges `[start, end)`, oldest first.
    holes: VecDeque<(u64, u64)>,
}

#[derive(Debug, Default)]
pub(crate) struct Sequences {
    /// By origin, then by subject: looked up without allocating.
    tracks: HashMap<String, HashMap<String, Track>>,
    tracked: usize,
    missed: u64,
}

impl Sequences {
    /// Sequence numbers skipped and not (yet) received.
    pub(crate) fn missed(&self) -> u64 {
        self.missed
    }

    /// Whether message `seq` of `origin` on `subject` is new. Nothing is
    /// recorded: call [`Sequences::record`] once it has been delivered.
    pub(crate) fn check(&self, origin: &str, subject: &str, seq: u64) -> Verdict {
        match self
            .tracks
            .get(origin)
            .and_then(|by_subject| by_subject.get(subject))
        {
            None => Verdict::Deliver,
            Some(track) if seq >= track.next => Verdict::Deliver,
            Some(track) if track.holes.iter().any(|&(s, e)| s <= seq && seq < e) => {
                Verdict::Deliver
            }
            Some(_) => Verdict::Duplicate,
        }
    }

    /// Record that message `seq` was delivered. Returns how many sequence
    /// numbers this message showed to be skipped (0 unless it opened a gap).
    pub(crate) fn record(&mut self, origin: &str, subject: &str, seq: u64) -> u64 {
        if self.tracked >= MAX_TRACKED {
            self.tracks.clear();
            self.tracked = 0;
        }
        if !self.tracks.contains_key(origin) {
            self.tracks.insert(origin.to_owned(), HashMap::new());
        }
        let Some(by_subject) = self.tracks.get_mut(origin) else {
            return 0;
        };
        let Some(track) = by_subject.get_mut(subject) else {
            // The first message seen from this origin on this subject: what
            // came before it was sent before this bridge listened.
            by_subject.insert(
                subject.to_owned(),
                Track {
                    next: seq.saturating_add(1),
                    holes: VecDeque::new(),
                },
            );
            self.tracked += 1;
            return 0;
        };
        if seq >= track.next {
            let gap = seq - track.next;
            if gap > 0 {
                track.holes.push_back((track.next, seq));
                if track.holes.len() > MAX_HOLES {
                    track.holes.pop_front();
                }
                self.missed += gap;
            }
            track.next = seq.saturating_add(1);
            return gap;
        }
        if let Some(i) = track.holes.iter().position(|&(s, e)| s <= seq && seq < e) {
            let (start, end) = track.holes[i];
            match (start == seq, seq + 1 == end) {
                (true, true) => {
                    track.holes.remove(i);
                }
                (true, false) => track.holes[i].0 = seq + 1,
                (false, true) => track.holes[i].1 = seq,
                (false, false) => {
                    track.holes[i].1 = seq;
                    track.holes.insert(i + 1, (seq + 1, end));
                }
            }
            self.missed -= 1;
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(seqs: &mut Sequences, seq: u64) -> Verdict {
        let verdict = seqs.check("a", "s", seq);
        if verdict == Verdict::Deliver {
            seqs.record("a", "s", seq);
        }
        verdict
    }

    #[test]
    fn in_order_messages_are_delivered_and_nothing_is_missed() {
        let mut seqs = Sequences::default();
        for seq in 1..=100 {
            assert_eq!(feed(&mut seqs, seq), Verdict::Deliver);
        }
        assert_eq!(seqs.missed(), 0);
    }

    #[test]
    fn a_gap_counts_as_missed_until_late_messages_fill_it() {
        let mut seqs = Sequences::default();
        feed(&mut seqs, 1);
        assert_eq!(seqs.record("a", "s", 6), 4);
        assert_eq!(seqs.missed(), 4);
        assert_eq!(feed(&mut seqs, 3), Verdict::Deliver);
        assert_eq!(feed(&mut seqs, 3), Verdict::Duplicate);
        assert_eq!(seqs.missed(), 3);
        for seq in [2, 4, 5] {
            assert_eq!(feed(&mut seqs, seq), Verdict::Deliver);
        }
        assert_eq!(seqs.missed(), 0);
        assert_eq!(feed(&mut seqs, 4), Verdict::Duplicate);
    }

    #[test]
    fn repeats_are_duplicates_and_origins_and_subjects_are_separate() {
        let mut seqs = Sequences::default();
        feed(&mut seqs, 1);
        feed(&mut seqs, 2);
        assert_eq!(feed(&mut seqs, 2), Verdict::Duplicate);
        assert_eq!(feed(&mut seqs, 1), Verdict::Duplicate);
        assert_eq!(seqs.check("b", "s", 1), Verdict::Deliver);
        assert_eq!(seqs.check("a", "t", 1), Verdict::Deliver);
    }

    #[test]
    fn tracking_starts_at_the_first_message_seen() {
        let mut seqs = Sequences::default();
        assert_eq!(feed(&mut seqs, 500), Verdict::Deliver);
        assert_eq!(feed(&mut seqs, 501), Verdict::Deliver);
        assert_eq!(seqs.missed(), 0);
    }
}
