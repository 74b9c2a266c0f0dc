//! A coarse, lazy timer wheel. Each connection keeps its deadline in a plain field that
//! activity overwrites (no wheel operation per message); the wheel holds one entry per
//! connection and, when that entry comes due, either fires or moves it to the current
//! deadline. Cost per tick is the entries in one slot, not the number of connections.

use std::time::{Duration, Instant};

/// Granularity of every timeout.
pub const TICK: Duration = Duration::from_millis(100);
const SLOTS: usize = 1024;

/// A wheel entry: which connection, and the deadline it was filed under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub index: u32,
    pub generation: u32,
    pub deadline: u32,
}

pub struct Wheel {
    slots: Vec<Vec<Entry>>,
    start: Instant,
    /// Every tick before this one has been swept.
    swept: u32,
    len: usize,
}

impl Wheel {
    pub fn new(now: Instant) -> Self {
        Wheel {
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            start: now,
            swept: 0,
            len: 0,
        }
    }

    /// The tick `now` falls in.
    pub fn tick_of(&self, now: Instant) -> u32 {
        (now.saturating_duration_since(self.start).as_millis() / TICK.as_millis()) as u32
    }

    /// Ticks to cover `d`, rounded up (at least one).
    pub fn ticks(d: Duration) -> u32 {
        (d.as_millis().div_ceil(TICK.as_millis()) as u32).max(1)
    }

    pub fn insert(&mut self, e: Entry) {
        let due = e.deadline.max(self.swept);
        self.slots[(due % SLOTS as u32) as usize].push(e);
        self.len += 1;
    }

    /// Moves every entry due by tick `now` into `due` (entries filed for a later lap of
    /// the wheel are put back).
    pub fn expire(&mut self, now: u32, due: &mut Vec<Entry>) {
        if self.swept > now {
            return;
        }
        // After a long sleep, one lap visits every slot; each entry is checked against
        // its own deadline, so nothing is missed.
        let last = now.min(self.swept + SLOTS as u32 - 1);
        let mut tick = self.swept;
        while tick <= last && self.len > 0 {
            let slot = (tick % SLOTS as u32) as usize;
            let before = due.len();
            // In place: the slot keeps its allocation for the next lap.
            self.slots[slot].retain(|e| {
                let fire = e.deadline <= now;
                if fire {
                    due.push(*e);
                }
                !fire
            });
            self.len -= due.len() - before;
            tick += 1;
        }
        self.swept = now + 1;
    }

    /// Time from `now` until tick `tick` begins (zero if it has).
    pub fn until_tick(&self, tick: u32, now: Instant) -> Duration {
        (self.start + TICK * tick).saturating_duration_since(now)
    }

    /// Time until the next tick boundary, or `None` when no entry is filed.
    pub fn next_timeout(&self, now: Instant) -> Option<Duration> {
        if self.len == 0 {
            return None;
        }
        let next = self.start + TICK * (self.tick_of(now) + 1);
        Some(next.saturating_duration_since(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_fire_at_their_tick_even_past_one_lap() {
        let t0 = Instant::now();
        let mut w = Wheel::new(t0);
        for (i, d) in [(0u32, 3u32), (1, 10), (2, SLOTS as u32 + 5)] {
            w.insert(Entry {
                index: i,
                generation: 0,
                deadline: d,
            });
        }
        let mut due = Vec::new();
        w.expire(2, &mut due);
        assert!(due.is_empty());
        w.expire(3, &mut due);
        assert_eq!(due.iter().map(|e| e.index).collect::<Vec<_>>(), [0]);
        due.clear();
        w.expire(SLOTS as u32 + 4, &mut due);
        assert_eq!(due.iter().map(|e| e.index).collect::<Vec<_>>(), [1]);
        due.clear();
        w.expire(SLOTS as u32 + 5, &mut due);
        assert_eq!(due.iter().map(|e| e.index).collect::<Vec<_>>(), [2]);
        assert!(w.next_timeout(t0).is_none());
    }
}
