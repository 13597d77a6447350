//! A map whose entries expire, with a fixed capacity: the development server's bounded
//! state (issued tokens, dynamically registered clients, seen assertion ids, fetched key
//! sets).
//!
//! Expiry is amortised: every entry has one deadline in a min-heap, and each insertion
//! first drops the entries whose deadline has passed, popping them off the heap. Each
//! entry is pushed and popped once, so no request pays for a scan of the whole map. Time
//! is the server's (injectable) clock in Unix seconds, so tests move it instead of
//! sleeping.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::Hash;

/// The map is full of live entries: the caller answers "try again later".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full {
    /// Seconds until the earliest entry expires (at least 1).
    pub(crate) retry_after_secs: u64,
}

struct Entry<V> {
    value: V,
    expires_at: i64,
    /// Tells the heap's record of this insertion from records of earlier, replaced ones.
    generation: u64,
}

pub(crate) struct ExpiringMap<K, V> {
    entries: HashMap<K, Entry<V>>,
    deadlines: BinaryHeap<Reverse<(i64, u64, K)>>,
    next_generation: u64,
    capacity: usize,
    quota: Option<OwnerQuota<V>>,
    /// The latest time the map was purged at: entries due by then may be gone.
    purged_until: i64,
}

/// A share of the capacity per owner of the values (a client's tokens), so that one owner
/// cannot fill the map for everyone.
struct OwnerQuota<V> {
    owner: fn(&V) -> &str,
    max: usize,
    /// An owner that stands for many (the clients registered over HTTP), held to at most
    /// half the capacity (at least one entry) whatever `max` is: they cannot fill a map
    /// of two entries or more for the others.
    shared_owner: Option<(&'static str, usize)>,
    counts: HashMap<String, usize>,
    /// Per owner, the earliest deadline of its entries as last known: kept in step on
    /// insertion, found again by a scan only once it has passed. It may be earlier than
    /// the truth (an entry removed before its deadline), never later, so a refusal's
    /// `Retry-After` is never too long, and refusals at the quota do not each scan the map.
    earliest: HashMap<String, i64>,
}

impl<V> OwnerQuota<V> {
    fn count(&self, value: &V) -> usize {
        self.counts.get((self.owner)(value)).copied().unwrap_or(0)
    }

    /// The most entries the owner of `value` may hold.
    fn max_for(&self, value: &V) -> usize {
        match self.shared_owner {
            Some((shared, max)) if (self.owner)(value) == shared => max,
            _ => self.max,
        }
    }

    fn add(&mut self, value: &V, expires_at: i64) {
        let owner = (self.owner)(value);
        *self.counts.entry(owner.to_owned()).or_default() += 1;
        if let Some(earliest) = self.earliest.get_mut(owner) {
            *earliest = (*earliest).min(expires_at);
        }
    }

    fn take(&mut self, value: &V) {
        let owner = (self.owner)(value);
        if let Some(count) = self.counts.get_mut(owner) {
            *count -= 1;
            if *count == 0 {
                self.counts.remove(owner);
                self.earliest.remove(owner);
            }
        }
    }
}

impl<K: Clone + Ord + Hash, V> ExpiringMap<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            deadlines: BinaryHeap::new(),
            next_generation: 0,
            capacity,
            quota: None,
            purged_until: i64::MIN,
        }
    }

    /// A map of `capacity` entries of which one owner (`owner` of the value) holds at most
    /// `max_per_owner`.
    pub(crate) fn with_owner_quota(
        capacity: usize,
        max_per_owner: usize,
        owner: fn(&V) -> &str,
    ) -> Self {
        // An owner with no entry never needs a deadline kept for it.
        debug_assert!(max_per_owner >= 1, "a quota of at least one entry");
        Self {
            quota: Some(OwnerQuota {
                owner,
                max: max_per_owner,
                shared_owner: None,
                counts: HashMap::new(),
                earliest: HashMap::new(),
            }),
            ..Self::new(capacity)
        }
    }

    /// Holds `owner`, which stands for many, to at most `max_per_owner` and half the
    /// capacity (at least one entry), so that it never fills the map for the others.
    pub(crate) fn with_shared_owner(mut self, owner: &'static str) -> Self {
        let capacity = self.capacity;
        if let Some(quota) = &mut self.quota {
            quota.shared_owner = Some((owner, quota.max.min(capacity / 2).max(1)));
        }
        self
    }

    /// The live value of `key` at `now`.
    pub(crate) fn get(&self, key: &K, now: i64) -> Option<&V> {
        self.entries
            .get(key)
            .filter(|entry| entry.expires_at > now)
            .map(|entry| &entry.value)
    }

    /// The live value of `key` at `now`, with its deadline.
    pub(crate) fn get_with_deadline(&self, key: &K, now: i64) -> Option<(&V, i64)> {
        self.entries
            .get(key)
            .filter(|entry| entry.expires_at > now)
            .map(|entry| (&entry.value, entry.expires_at))
    }

    /// Inserts or replaces `key` until `expires_at`. A new key needs room: when the map
    /// holds `capacity` live entries, nothing changes and the answer is [`Full`].
    pub(crate) fn insert(
        &mut self,
        key: K,
        value: V,
        expires_at: i64,
        now: i64,
    ) -> Result<(), Full> {
        self.purge(now);
        let replacing = self.entries.contains_key(&key);
        if !replacing && self.entries.len() >= self.capacity {
            return Err(self.full(now));
        }
        if !replacing
            && let Some(quota) = &self.quota
            && quota.count(&value) >= quota.max_for(&value)
        {
            return Err(self.full_for_owner_of(&value, now));
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        self.deadlines
            .push(Reverse((expires_at, generation, key.clone())));
        if let Some(quota) = &mut self.quota {
            quota.add(&value, expires_at);
        }
        let replaced = self.entries.insert(
            key,
            Entry {
                value,
                expires_at,
                generation,
            },
        );
        if let (Some(quota), Some(replaced)) = (&mut self.quota, replaced) {
            quota.take(&replaced.value);
        }
        self.compact_deadlines();
        Ok(())
    }

    /// Inserts `key` only if it has no live entry: `Ok(true)` when inserted, `Ok(false)`
    /// when a live entry was already there (one lock covers the check and the insertion).
    /// An entry due by the latest time the map was purged at is never new: its key may
    /// have been dropped already, so a caller whose `now` is older (read before an await,
    /// or a clock set back since) must not insert it again as if it had never been seen.
    /// After a clock set forward and back, keys due before the forward time read as seen
    /// until the clock passes it again: for the replay store a fresh assertion that
    /// expires by then is refused as used, for the refetch cooldown a refetch is skipped
    /// (both refuse rather than accept).
    pub(crate) fn insert_new(
        &mut self,
        key: K,
        value: V,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, Full> {
        if expires_at <= self.purged_until || self.get(&key, now).is_some() {
            return Ok(false);
        }
        self.insert(key, value, expires_at, now).map(|()| true)
    }

    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let value = self.entries.remove(key).map(|entry| entry.value)?;
        if let Some(quota) = &mut self.quota {
            quota.take(&value);
        }
        Some(value)
    }

    /// How many entries are stored (live, or expired and not yet dropped).
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Drops every entry whose deadline is at or before `now`.
    fn purge(&mut self, now: i64) {
        self.purged_until = self.purged_until.max(now);
        while let Some(Reverse((deadline, generation, _))) = self.deadlines.peek() {
            if *deadline > now {
                break;
            }
            let generation = *generation;
            let Some(Reverse((_, _, key))) = self.deadlines.pop() else {
                break;
            };
            if self
                .entries
                .get(&key)
                .is_some_and(|entry| entry.generation == generation)
            {
                self.remove(&key);
            }
        }
    }

    /// Replaced and removed entries leave stale deadlines behind; when they outnumber the
    /// live entries, the heap is rebuilt from the map (amortised over as many insertions).
    fn compact_deadlines(&mut self) {
        if self.deadlines.len() <= 2 * self.entries.len() + 64 {
            return;
        }
        self.deadlines = self
            .entries
            .iter()
            .map(|(key, entry)| Reverse((entry.expires_at, entry.generation, key.clone())))
            .collect();
    }

    /// Like [`full`](Self::full), for an owner at its quota: when the earliest of its own
    /// entries expires (the known deadline while it lies ahead, else a scan that finds it
    /// again: at most one scan each time the owner's earliest entry expires).
    fn full_for_owner_of(&mut self, value: &V, now: i64) -> Full {
        let Some(quota) = &self.quota else {
            return self.full(now);
        };
        let owner = (quota.owner)(value);
        let earliest = match quota.earliest.get(owner) {
            Some(&earliest) if earliest > now => earliest,
            _ => {
                let found = self
                    .entries
                    .values()
                    .filter(|entry| (quota.owner)(&entry.value) == owner)
                    .map(|entry| entry.expires_at)
                    .min()
                    .unwrap_or(now);
                let owner = owner.to_owned();
                if let Some(quota) = &mut self.quota {
                    quota.earliest.insert(owner, found);
                }
                found
            }
        };
        Full {
            retry_after_secs: u64::try_from(earliest.saturating_sub(now))
                .unwrap_or(0)
                .max(1),
        }
    }

    /// The earliest deadline on the heap (after a purge, a future one; a stale record can
    /// only make the hint earlier, never later).
    fn full(&self, now: i64) -> Full {
        let earliest = self
            .deadlines
            .peek()
            .map_or(now, |Reverse((deadline, _, _))| *deadline);
        Full {
            retry_after_secs: u64::try_from(earliest.saturating_sub(now))
                .unwrap_or(0)
                .max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_at_their_deadline() {
        let mut map = ExpiringMap::new(10);
        map.insert("a", 1, 100, 0).unwrap();
        assert_eq!(map.get(&"a", 99), Some(&1));
        assert_eq!(map.get(&"a", 100), None);
        // The next insertion drops it.
        map.insert("b", 2, 200, 100).unwrap();
        assert_eq!(map.len(), 1);
    }

    #[test]
    fn capacity_is_a_hard_limit_until_entries_expire() {
        let mut map = ExpiringMap::new(2);
        map.insert(1, (), 50, 0).unwrap();
        map.insert(2, (), 80, 0).unwrap();
        assert_eq!(
            map.insert(3, (), 90, 10),
            Err(Full {
                retry_after_secs: 40
            })
        );
        // Replacing an existing key needs no room.
        map.insert(2, (), 90, 10).unwrap();
        // Once the earliest entry expires there is room again.
        map.insert(3, (), 90, 50).unwrap();
        assert_eq!(map.len(), 2);
    }

    #[test]
    fn insert_new_refuses_a_live_key_and_accepts_an_expired_one() {
        let mut map = ExpiringMap::new(4);
        assert_eq!(map.insert_new("jti", (), 10, 0), Ok(true));
        assert_eq!(map.insert_new("jti", (), 20, 5), Ok(false));
        assert_eq!(map.insert_new("jti", (), 20, 10), Ok(true));
    }

    /// Once another insertion at a later time has dropped a key, a caller with an older
    /// time (read before an await, or a clock set back) cannot insert it again while its
    /// deadline is past that later time; a deadline beyond it can.
    #[test]
    fn insert_new_refuses_a_key_due_by_the_latest_purge() {
        let mut map = ExpiringMap::new(4);
        assert_eq!(map.insert_new("jti", (), 10, 0), Ok(true));
        assert_eq!(map.insert("other", (), 100, 12), Ok(()));
        assert_eq!(map.len(), 1, "the first key was dropped at 12");
        assert_eq!(map.insert_new("jti", (), 10, 9), Ok(false));
        assert_eq!(map.insert_new("jti", (), 12, 9), Ok(false));
        assert_eq!(map.insert_new("jti", (), 13, 9), Ok(true));
    }

    /// An owner that stands for many holds at most half the capacity, even when the
    /// quota per owner is the whole map; other owners fill the rest.
    #[test]
    fn a_shared_owner_holds_at_most_half() {
        let mut map =
            ExpiringMap::with_owner_quota(4, 4, |owner: &&str| *owner).with_shared_owner("shared");
        assert_eq!(map.insert(1, "shared", 100, 0), Ok(()));
        assert_eq!(map.insert(2, "shared", 100, 0), Ok(()));
        assert!(map.insert(3, "shared", 100, 0).is_err());
        assert_eq!(map.insert(3, "code", 100, 0), Ok(()));
        assert_eq!(map.insert(4, "code", 100, 0), Ok(()));
    }

    #[test]
    fn replacements_do_not_grow_the_heap_without_bound() {
        let mut map = ExpiringMap::new(4);
        for round in 0..10_000 {
            map.insert("same", round, 1_000_000, 0).unwrap();
        }
        assert_eq!(map.len(), 1);
        assert!(map.deadlines.len() <= 2 * map.len() + 65);
        assert_eq!(map.get(&"same", 0), Some(&9_999));
    }

    /// One owner holds at most its quota; others still find room; removal and expiry
    /// give the owner its room back; a replacement counts once.
    #[test]
    fn owners_hold_at_most_their_quota() {
        let owner = |value: &(&'static str, u32)| value.0;
        let mut map = ExpiringMap::with_owner_quota(10, 2, owner);
        map.insert(1, ("a", 1), 50, 0).unwrap();
        map.insert(2, ("a", 2), 80, 0).unwrap();
        assert_eq!(
            map.insert(3, ("a", 3), 90, 10),
            Err(Full {
                retry_after_secs: 40
            })
        );
        map.insert(4, ("b", 1), 90, 10).unwrap();
        // Replacing one of its entries needs no more of the quota.
        map.insert(2, ("a", 9), 90, 10).unwrap();
        assert!(map.insert(5, ("a", 5), 90, 10).is_err());
        // Removal and expiry give room back.
        assert_eq!(map.remove(&2), Some(("a", 9)));
        map.insert(5, ("a", 5), 90, 10).unwrap();
        assert!(map.insert(6, ("a", 6), 90, 10).is_err());
        map.insert(6, ("a", 6), 90, 50).unwrap();
        assert_eq!(map.len(), 3);
    }

    /// The `Retry-After` of an owner at its quota is when its earliest entry expires: known
    /// from the last scan while that lies ahead, found again once it has passed; never later
    /// than the truth.
    #[test]
    fn an_owner_at_its_quota_learns_when_room_comes() {
        let owner = |value: &(&'static str, u32)| value.0;
        let mut map = ExpiringMap::with_owner_quota(100, 2, owner);
        map.insert(1, ("a", 1), 50, 0).unwrap();
        map.insert(2, ("a", 2), 80, 0).unwrap();
        let retry = |map: &mut ExpiringMap<u32, (&'static str, u32)>, now| {
            map.insert(99, ("a", 99), 200, now)
                .unwrap_err()
                .retry_after_secs
        };
        assert_eq!(retry(&mut map, 10), 40);
        assert_eq!(retry(&mut map, 20), 30, "from the known deadline");
        // Its earliest entry expired: room for one, then the next deadline is found.
        map.insert(3, ("a", 3), 70, 50).unwrap();
        assert_eq!(retry(&mut map, 55), 15, "the new entry is the earliest");
        // An entry removed before its deadline may leave an earlier hint, never a later one.
        assert_eq!(map.remove(&3), Some(("a", 3)));
        map.insert(4, ("a", 4), 120, 56).unwrap();
        assert!(retry(&mut map, 57) <= 23);
        assert_eq!(retry(&mut map, 75), 5, "found again once the hint passed");
    }

    #[test]
    fn a_replaced_entry_keeps_its_new_deadline() {
        let mut map = ExpiringMap::new(4);
        map.insert("k", 1, 10, 0).unwrap();
        map.insert("k", 2, 100, 0).unwrap();
        // The stale deadline (10) passes: the entry stays.
        map.insert("other", 3, 100, 20).unwrap();
        assert_eq!(map.get(&"k", 20), Some(&2));
    }
}
