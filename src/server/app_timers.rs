//! Timers for applications ([`Ctx::set_timer`](super::Ctx::set_timer),
//! [`Ctx::set_loop_timer`](super::Ctx::set_loop_timer)), on the loop's coarse tick
//! (100 ms): a heap ordered by due tick, then by the order they were set.
//!
//! Bounded: at most [`MAX_APP_TIMERS`] pending per loop (past it `set_timer` refuses and
//! says so), and at most [`MAX_TIMERS_PER_TURN`] fired per loop iteration (the rest fire
//! in the next one, which the loop starts without sleeping), so a handler that sets a
//! timer per message cannot grow the heap without end or stall the loop at one tick.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::handler::ConnId;

/// One pending application timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct AppTimer {
    pub deadline: u32,
    seq: u64,
    /// The connection it belongs to, or `None` for a loop timer.
    pub conn: Option<ConnId>,
    pub token: u64,
}

/// Pending application timers per loop (about 40 bytes each: 40 MiB at the bound).
pub const MAX_APP_TIMERS: usize = 1 << 20;

/// Application timers fired per loop iteration.
pub const MAX_TIMERS_PER_TURN: usize = 4096;

#[derive(Debug, Default)]
pub(crate) struct AppTimers {
    heap: BinaryHeap<Reverse<AppTimer>>,
    seq: u64,
}

impl AppTimers {
    /// Files a timer; false (nothing filed) at [`MAX_APP_TIMERS`].
    pub fn add(&mut self, deadline: u32, conn: Option<ConnId>, token: u64) -> bool {
        if self.heap.len() >= MAX_APP_TIMERS {
            return false;
        }
        self.seq += 1;
        self.heap.push(Reverse(AppTimer {
            deadline,
            seq: self.seq,
            conn,
            token,
        }));
        true
    }

    /// The earliest due tick, if any timer is pending.
    pub fn next_deadline(&self) -> Option<u32> {
        self.heap.peek().map(|t| t.0.deadline)
    }

    /// Removes and returns the next timer due by tick `now`.
    pub fn pop_due(&mut self, now: u32) -> Option<AppTimer> {
        if self.heap.peek()?.0.deadline <= now {
            self.heap.pop().map(|t| t.0)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_in_deadline_then_set_order() {
        let mut t = AppTimers::default();
        t.add(5, None, 1);
        t.add(3, None, 2);
        t.add(5, None, 3);
        assert_eq!(t.next_deadline(), Some(3));
        assert!(t.pop_due(2).is_none());
        let order: Vec<u64> = std::iter::from_fn(|| t.pop_due(5))
            .map(|x| x.token)
            .collect();
        assert_eq!(order, [2, 1, 3]);
        assert_eq!(t.next_deadline(), None);
    }
}
