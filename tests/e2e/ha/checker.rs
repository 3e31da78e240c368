//! A linearizability checker for single-key registers (Wing & Gong's search with Lowe's
//! memoization, as Knossos and Porcupine do): is there an order of the operations, consistent
//! with real time, in which every read returns the latest write? Keys are independent, so a
//! history is checked one key at a time.
//!
//! A write whose outcome is unknown (error or timeout) never returns: it may take effect at any
//! point after its invocation, or not at all (taking effect after everything is the same).

use std::collections::HashSet;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Write(String),
    /// What the read saw; `None`: the key did not exist.
    Read(Option<String>),
}

#[derive(Clone, Debug)]
pub struct Event {
    /// When the operation was invoked (any monotonic unit).
    pub call: u64,
    /// When its answer arrived; `None` if it never did (only writes may be left so).
    pub ret: Option<u64>,
    pub op: Op,
}

/// Applies `op` to a register holding `state`; `None` if the op cannot happen there.
fn step(state: &Option<String>, op: &Op) -> Option<Option<String>> {
    match op {
        Op::Write(v) => Some(Some(v.clone())),
        Op::Read(seen) => (seen == state).then(|| state.clone()),
    }
}

/// One entry of the time-ordered list: an operation's call or its return.
#[derive(Clone, Copy)]
struct Entry {
    op: usize,
    is_call: bool,
    /// For a call, the index of its return entry.
    partner: usize,
    prev: usize,
    next: usize,
}

const HEAD: usize = 0;
const NONE: usize = usize::MAX;

/// Whether the history of one register (initially absent) is linearizable.
pub fn linearizable(history: &[Event]) -> bool {
    let n = history.len();
    // Calls sort before returns at equal times: touching operations count as concurrent.
    let mut points: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, e) in history.iter().enumerate() {
        points.push((e.call, false, i));
        points.push((e.ret.unwrap_or(u64::MAX), true, i));
    }
    points.sort();
    // entries[0] is the list head; entry k+1 is points[k].
    let mut entries = vec![Entry {
        op: NONE,
        is_call: false,
        partner: NONE,
        prev: NONE,
        next: NONE,
    }];
    let mut ret_of = vec![NONE; n];
    for (k, &(_, is_ret, op)) in points.iter().enumerate() {
        let idx = k + 1;
        entries.push(Entry {
            op,
            is_call: !is_ret,
            partner: NONE,
            prev: idx - 1,
            next: if k + 1 < points.len() { idx + 1 } else { NONE },
        });
        if is_ret {
            ret_of[op] = idx;
        }
    }
    entries[HEAD].next = if points.is_empty() { NONE } else { 1 };
    for idx in 1..entries.len() {
        if entries[idx].is_call {
            entries[idx].partner = ret_of[entries[idx].op];
        }
    }

    let words = n.div_ceil(64).max(1);
    let mut linearized = vec![0u64; words];
    let mut state: Option<String> = None;
    let mut seen: HashSet<(Vec<u64>, Option<String>)> = HashSet::new();
    let mut stack: Vec<(usize, Option<String>)> = Vec::new();
    let mut cur = entries[HEAD].next;
    while entries[HEAD].next != NONE {
        if cur == NONE {
            // Only possible if returns were missing; treat as a dead end.
            return false;
        }
        let e = entries[cur];
        if e.is_call {
            if let Some(next_state) = step(&state, &history[e.op].op) {
                let mut lin = linearized.clone();
                lin[e.op / 64] |= 1 << (e.op % 64);
                if seen.insert((lin.clone(), next_state.clone())) {
                    stack.push((cur, std::mem::replace(&mut state, next_state)));
                    linearized = lin;
                    lift(&mut entries, cur);
                    cur = entries[HEAD].next;
                    continue;
                }
            }
            cur = e.next;
        } else {
            // An operation returned before being linearized: undo the last choice.
            let Some((call, old)) = stack.pop() else {
                return false;
            };
            state = old;
            let op = entries[call].op;
            linearized[op / 64] &= !(1 << (op % 64));
            unlift(&mut entries, call);
            cur = entries[call].next;
        }
    }
    true
}

/// Takes a call and its return out of the list.
fn lift(entries: &mut [Entry], call: usize) {
    for idx in [call, entries[call].partner] {
        let (p, nx) = (entries[idx].prev, entries[idx].next);
        entries[p].next = nx;
        if nx != NONE {
            entries[nx].prev = p;
        }
    }
}

/// Puts them back (in the reverse order of `lift`).
fn unlift(entries: &mut [Entry], call: usize) {
    for idx in [entries[call].partner, call] {
        let (p, nx) = (entries[idx].prev, entries[idx].next);
        entries[p].next = idx;
        if nx != NONE {
            entries[nx].prev = idx;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(call: u64, ret: u64, v: &str) -> Event {
        Event {
            call,
            ret: Some(ret),
            op: Op::Write(v.into()),
        }
    }
    fn r(call: u64, ret: u64, v: Option<&str>) -> Event {
        Event {
            call,
            ret: Some(ret),
            op: Op::Read(v.map(str::to_string)),
        }
    }

    #[test]
    fn sequential_and_concurrent_histories_pass() {
        assert!(linearizable(&[]));
        assert!(linearizable(&[
            r(0, 1, None),
            w(2, 3, "a"),
            r(4, 5, Some("a"))
        ]));
        // The read overlaps the write: either value is fine.
        assert!(linearizable(&[
            w(0, 10, "a"),
            r(1, 2, None),
            r(3, 4, Some("a"))
        ]));
    }

    #[test]
    fn a_stale_read_is_caught() {
        // b was written after a finished, and a read started after b finished sees a.
        assert!(!linearizable(&[
            w(0, 1, "a"),
            w(2, 3, "b"),
            r(4, 5, Some("a"))
        ]));
        // Reads that go back in time: once a reader saw b, a later reader may not see a.
        assert!(!linearizable(&[
            w(0, 100, "a"),
            w(0, 100, "b"),
            r(10, 11, Some("b")),
            r(20, 21, Some("a")),
            r(30, 31, Some("b")),
        ]));
        // A value nobody wrote.
        assert!(!linearizable(&[w(0, 1, "a"), r(2, 3, Some("zzz"))]));
    }

    #[test]
    fn unknown_writes_may_or_may_not_happen() {
        let lost = |call, v: &str| Event {
            call,
            ret: None,
            op: Op::Write(v.into()),
        };
        assert!(linearizable(&[
            w(0, 1, "a"),
            lost(2, "b"),
            r(3, 4, Some("a"))
        ]));
        assert!(linearizable(&[
            w(0, 1, "a"),
            lost(2, "b"),
            r(50, 51, Some("b"))
        ]));
        // But not before it was invoked.
        assert!(!linearizable(&[
            w(0, 1, "a"),
            r(2, 3, Some("b")),
            lost(10, "b")
        ]));
    }
}
