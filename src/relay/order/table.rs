//! Which held message waits behind which: the pure core of per-key order.
//! No clock, no runtime, no network: every rule is unit-tested below, and
//! [`super`] runs it behind a lock.
//!
//! The rule: a message may go when every message that arrived before it and
//! shares one of its keys has left (delivered, dead-lettered, coalesced,
//! handed back). Per key the table keeps the messages that have it, in the
//! order they arrived; a message may go when it is first in the line of
//! each of its keys. A message without keys goes at once.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// The messages held, by key, in the order they arrived.
#[derive(Debug)]
pub struct KeyTable<K> {
    lines: HashMap<K, VecDeque<u64>>,
    messages: HashMap<u64, Entry<K>>,
    waiting: usize,
}

#[derive(Debug)]
struct Entry<K> {
    keys: Vec<K>,
    free: bool,
}

impl<K> Default for KeyTable<K> {
    fn default() -> Self {
        Self {
            lines: HashMap::new(),
            messages: HashMap::new(),
            waiting: 0,
        }
    }
}

impl<K: Clone + Eq + Hash> KeyTable<K> {
    /// Message `id` arrived with `keys` (duplicates are ignored: a message
    /// never waits behind itself). Says whether it may go now.
    pub fn arrive(&mut self, id: u64, mut keys: Vec<K>) -> bool {
        dedup(&mut keys);
        let mut free = true;
        for key in &keys {
            let line = self.lines.entry(key.clone()).or_default();
            free &= line.is_empty();
            line.push_back(id);
        }
        if !free {
            self.waiting += 1;
        }
        self.messages.insert(id, Entry { keys, free });
        free
    }

    /// Message `id` left (or was never let go and is given up: a lost
    /// connection, a coalesced copy). Returns the messages this lets go.
    pub fn leave(&mut self, id: u64) -> Vec<u64> {
        let Some(entry) = self.messages.remove(&id) else {
            return Vec::new();
        };
        if !entry.free {
            self.waiting -= 1;
        }
        let mut fronts = Vec::new();
        for key in &entry.keys {
            let Some(line) = self.lines.get_mut(key) else { continue };
            let was_first = line.front() == Some(&id);
            line.retain(|&other| other != id);
            match line.front() {
                None => {
                    self.lines.remove(key);
                }
                Some(&next) if was_first => fronts.push(next),
                Some(_) => {}
            }
        }
        let mut freed = Vec::new();
        for next in fronts {
            if self.is_first_in_every_line(next)
                && let Some(entry) = self.messages.get_mut(&next)
                && !entry.free
            {
                entry.free = true;
                self.waiting -= 1;
                freed.push(next);
            }
        }
        freed
    }

    /// The last message that arrived with `key` and is still held.
    pub fn last_with(&self, key: &K) -> Option<u64> {
        self.lines.get(key).and_then(|line| line.back().copied())
    }

    /// Messages held that may not go yet.
    pub fn waiting(&self) -> usize {
        self.waiting
    }

    /// Messages held.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether no message is held.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    fn is_first_in_every_line(&self, id: u64) -> bool {
        self.messages.get(&id).is_some_and(|entry| {
            entry
                .keys
                .iter()
                .all(|key| self.lines.get(key).and_then(|line| line.front()) == Some(&id))
        })
    }
}

/// Drops repeated keys, keeping the first of each (a handful per message:
/// quadratic is fine).
fn dedup<K: Eq>(keys: &mut Vec<K>) {
    let mut i = 0;
    while i < keys.len() {
        if keys[..i].contains(&keys[i]) {
            keys.remove(i);
        } else {
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(list: &[&str]) -> Vec<String> {
        list.iter().map(|k| (*k).to_owned()).collect()
    }

    #[test]
    fn messages_of_one_key_go_one_after_another_in_arrival_order() {
        let mut table = KeyTable::default();
        assert!(table.arrive(1, keys(&["a"])));
        assert!(!table.arrive(2, keys(&["a"])));
        assert!(!table.arrive(3, keys(&["a"])));
        assert_eq!(table.waiting(), 2);
        assert_eq!(table.leave(1), [2]);
        assert_eq!(table.leave(2), [3]);
        assert_eq!(table.leave(3), Vec::<u64>::new());
        assert!(table.is_empty());
        assert_eq!(table.waiting(), 0);
    }

    #[test]
    fn different_keys_and_no_keys_go_at_once() {
        let mut table = KeyTable::default();
        assert!(table.arrive(1, keys(&["a"])));
        assert!(table.arrive(2, keys(&["b"])));
        assert!(table.arrive(3, keys(&[])));
        assert!(table.arrive(4, keys(&[])));
        assert_eq!(table.waiting(), 0);
        assert_eq!(table.len(), 4);
    }

    #[test]
    fn a_renumbering_waits_behind_both_numbers_and_holds_both() {
        // 101 -> 102, then a new 101, then 102 updated.
        let mut table = KeyTable::default();
        assert!(table.arrive(1, keys(&["product:102"])));
        assert!(!table.arrive(2, keys(&["product:101", "product:102"])));
        assert!(!table.arrive(3, keys(&["product:101", "product:101"])));
        assert!(!table.arrive(4, keys(&["product:102"])));
        assert!(table.arrive(5, keys(&["product:7"])));
        assert_eq!(table.waiting(), 3);
        // The renumbering goes once the 102 before it is done...
        assert_eq!(table.leave(1), [2]);
        // ...and then both that wait behind it go: one per number.
        let mut freed = table.leave(2);
        freed.sort_unstable();
        assert_eq!(freed, [3, 4]);
    }

    #[test]
    fn a_message_with_two_keys_waits_for_the_later_of_the_two() {
        let mut table = KeyTable::default();
        assert!(table.arrive(1, keys(&["a"])));
        assert!(table.arrive(2, keys(&["b"])));
        assert!(!table.arrive(3, keys(&["a", "b"])));
        assert_eq!(table.leave(1), Vec::<u64>::new(), "still behind 2 on b");
        assert_eq!(table.leave(2), [3]);
    }

    #[test]
    fn the_same_key_twice_never_waits_behind_itself() {
        let mut table = KeyTable::default();
        assert!(table.arrive(1, keys(&["product:101", "product:101"])));
        assert_eq!(table.leave(1), Vec::<u64>::new());
        assert!(table.is_empty());
    }

    #[test]
    fn a_waiting_message_given_up_lets_nobody_go_early() {
        let mut table = KeyTable::default();
        assert!(table.arrive(1, keys(&["a"])));
        assert!(!table.arrive(2, keys(&["a"])));
        assert!(!table.arrive(3, keys(&["a"])));
        // 2 is given up (coalesced, say): 3 still waits for 1.
        assert_eq!(table.leave(2), Vec::<u64>::new());
        assert_eq!(table.waiting(), 1);
        assert_eq!(table.leave(1), [3]);
        assert_eq!(table.waiting(), 0);
    }

    #[test]
    fn leaving_twice_or_unknown_changes_nothing() {
        let mut table = KeyTable::default();
        assert!(table.arrive(1, keys(&["a"])));
        assert!(!table.arrive(2, keys(&["a"])));
        assert_eq!(table.leave(1), [2]);
        assert_eq!(table.leave(1), Vec::<u64>::new());
        assert_eq!(table.leave(99), Vec::<u64>::new());
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn the_last_holder_of_a_key_is_known() {
        let mut table = KeyTable::default();
        assert_eq!(table.last_with(&"a".to_owned()), None);
        table.arrive(1, keys(&["a"]));
        table.arrive(2, keys(&["a", "b"]));
        assert_eq!(table.last_with(&"a".to_owned()), Some(2));
        table.leave(2);
        assert_eq!(table.last_with(&"a".to_owned()), Some(1));
        assert_eq!(table.last_with(&"b".to_owned()), None);
    }

    #[test]
    fn interleaved_keys_keep_each_keys_order() {
        // 30 keys x 20 messages, interleaved; let go in any order the table
        // allows; per key the order of going is the order of arriving.
        let mut table = KeyTable::default();
        let mut free = Vec::new();
        let key_of = |id: u64| format!("k{}", id % 30);
        for id in 0..600u64 {
            if table.arrive(id, vec![key_of(id)]) {
                free.push(id);
            }
        }
        let mut gone: HashMap<String, Vec<u64>> = HashMap::new();
        let mut turn = 0usize;
        while let Some(index) = (!free.is_empty()).then(|| (turn * 7) % free.len()) {
            turn += 1;
            let id = free.swap_remove(index);
            gone.entry(key_of(id)).or_default().push(id);
            free.extend(table.leave(id));
        }
        assert!(table.is_empty());
        for (key, ids) in gone {
            assert_eq!(ids.len(), 20, "{key}");
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "{key}: {ids:?}");
        }
    }
}
