//! Answers held back until the worker has handled the rest of a poll round's
//! events, then sent connection by connection (Redis's write-before-sleep,
//! bjoern's read-all-then-write-all).
//!
//! Sent one by one as they are made, each answer wakes the client side on its
//! own: over loopback every `send` pays for waking the peer's thread. Sent as
//! a burst, the first wakes it and the rest find it running, and its next
//! requests come back as a burst too, so both sides do more per wake-up. The
//! wait is bounded: an answer is held at most `MAX_WAIT` (a slow handler
//! later in the round does not delay the answers before it by more; one that
//! blocks holds them until it returns, as it holds its whole worker) and the
//! round holds at most `MAX_BYTES`. A round with a single event holds nothing:
//! there is nothing to gather, and holding would cost a clock read.

use std::time::{Duration, Instant};

/// The longest an answer waits for the rest of its round.
const MAX_WAIT: Duration = Duration::from_micros(100);
/// The most bytes held in one round; past it, answers go out at once.
const MAX_BYTES: usize = 256 * 1024;
/// The clock is read for `overdue` once per this many events.
const CHECK_EVERY: u32 = 4;

/// The held answers of one worker: each connection's answers in a buffer of
/// their own, taken by swapping with the worker's output buffer (no copy:
/// a copy cost ~350 instructions of a 1 KiB static answer), and the
/// connections, in the order they were held.
#[derive(Default)]
pub(crate) struct HeldAnswers {
    answers: Vec<Vec<u8>>,
    /// Bytes held this round.
    total: usize,
    /// Emptied buffers, swapped in for the next answer held.
    spare: Vec<Vec<u8>>,
    /// The capacity `spare` keeps, at most `SPARE_BYTES`.
    spare_bytes: usize,
    conns: Vec<usize>,
    /// When the first answer of the round was held.
    since: Option<Instant>,
    /// This round has more than one event: answers may be held.
    enabled: bool,
    /// Events handled this round, for `overdue`'s clock reads.
    events: u32,
}

/// Emptied buffers are kept up to this capacity in all, none larger than
/// `SPARE_MAX`: enough for a round of small answers to allocate nothing.
const SPARE_BYTES: usize = 1 << 20;
const SPARE_MAX: usize = 64 * 1024;

impl HeldAnswers {
    /// Begins a poll round of `events` events (held answers of the previous
    /// one were all sent).
    pub fn start_round(&mut self, events: usize) {
        self.enabled = events > 1;
        self.events = 0;
    }

    /// Whether `more` bytes may be held now.
    pub fn can_hold(&self, more: usize) -> bool {
        self.enabled && self.total + more <= MAX_BYTES
    }

    /// Takes the answers in `out` for connection `index`, leaving `out` an
    /// empty buffer; returns the number to read them back with `bytes`.
    pub fn hold(&mut self, index: usize, out: &mut Vec<u8>) -> u32 {
        if self.since.is_none() {
            self.since = Some(Instant::now());
        }
        let mut answer = match self.spare.pop() {
            Some(buffer) => {
                self.spare_bytes -= buffer.capacity();
                buffer
            }
            None => Vec::new(),
        };
        std::mem::swap(out, &mut answer);
        self.total += answer.len();
        self.answers.push(answer);
        self.conns.push(index);
        (self.answers.len() - 1) as u32
    }

    /// Called after each event: whether the oldest held answer has waited
    /// long enough (the clock is read every `CHECK_EVERY` events).
    pub fn overdue(&mut self) -> bool {
        self.events += 1;
        self.events % CHECK_EVERY == 0 && self.since.is_some_and(|t| t.elapsed() >= MAX_WAIT)
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// The bytes held under a number `hold` returned (until `clear`).
    pub fn bytes(&self, held: u32) -> &[u8] {
        &self.answers[held as usize]
    }

    /// The connections held this round, in order; the list is given back with
    /// `clear`.
    pub fn take_conns(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.conns)
    }

    /// Forgets the round (after every connection's answers were sent), keeping
    /// buffers for the next; `conns` is the list `take_conns` gave.
    pub fn clear(&mut self, mut conns: Vec<usize>) {
        conns.clear();
        self.conns = conns;
        for mut buffer in self.answers.drain(..) {
            let capacity = buffer.capacity();
            if capacity <= SPARE_MAX && self.spare_bytes + capacity <= SPARE_BYTES {
                buffer.clear();
                self.spare_bytes += capacity;
                self.spare.push(buffer);
            }
        }
        self.total = 0;
        self.since = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_of_one_event_holds_nothing_and_a_round_holds_at_most_max_bytes() {
        let mut held = HeldAnswers::default();
        held.start_round(1);
        assert!(!held.can_hold(10));
        held.start_round(2);
        assert!(held.can_hold(MAX_BYTES));
        assert!(!held.can_hold(MAX_BYTES + 1));
        let mut out = vec![b'a'; MAX_BYTES - 10];
        let number = held.hold(3, &mut out);
        assert!(out.is_empty() && held.bytes(number).len() == MAX_BYTES - 10);
        assert!(held.can_hold(10) && !held.can_hold(11));
    }

    /// Answers come back in order with their own bytes, and a cleared round
    /// starts empty (with the connection list and the buffers handed back).
    #[test]
    fn holds_answers_per_connection_in_order() {
        let mut held = HeldAnswers::default();
        held.start_round(3);
        let first = held.hold(7, &mut b"one".to_vec());
        let second = held.hold(2, &mut b"two!".to_vec());
        assert_eq!((held.bytes(first), held.bytes(second)), (&b"one"[..], &b"two!"[..]));
        let conns = held.take_conns();
        assert_eq!(conns, [7, 2]);
        held.clear(conns);
        assert!(held.is_empty());
        let mut out = b"x".to_vec();
        assert_eq!(held.hold(1, &mut out), 0);
        assert_eq!(held.bytes(0), b"x");
        // The worker's buffer came back from the round before: emptied, kept.
        assert!(out.is_empty() && out.capacity() >= 3);
    }

    /// The oldest answer is overdue once it waited `MAX_WAIT`, seen on every
    /// `CHECK_EVERY`th event; with nothing held, never.
    #[test]
    fn overdue_after_the_wait_on_a_checked_event() {
        let mut held = HeldAnswers::default();
        held.start_round(8);
        std::thread::sleep(MAX_WAIT * 2);
        assert!((0..2 * CHECK_EVERY).all(|_| !held.overdue()), "nothing held");
        held.hold(1, &mut b"a".to_vec());
        assert!(!held.overdue(), "just held");
        std::thread::sleep(MAX_WAIT * 2);
        let checks: Vec<bool> = (0..CHECK_EVERY).map(|_| held.overdue()).collect();
        assert_eq!(checks.iter().filter(|&&c| c).count(), 1, "{checks:?}");
    }
}
