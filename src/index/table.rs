//! The token table: one slot per token, found by its digest, in shards that readers lock only
//! for reading.
//!
//! A digest is uniformly random, so its bytes pick the shard and serve as the hash: nothing is
//! hashed again. Each shard keeps its slots in one dense vector and a `hashbrown::HashTable` of
//! 4-byte positions into it, so a slot costs its own size plus a few bytes of table, whatever
//! the table's load factor (a map of whole entries would cost up to twice its entries).

use std::sync::RwLock;

use hashbrown::HashTable;

use crate::domain::token::TokenHash;

/// How many shards: enough that writers rarely block a reader of another token.
const SHARDS: usize = 64;

/// What a table slot must offer: the digest it is found by.
pub trait Keyed {
    /// Returns the digest of the slot's token.
    fn key(&self) -> &TokenHash;
}

/// Slots of type `T` by token digest.
pub struct Table<T> {
    shards: Box<[RwLock<Shard<T>>]>,
}

struct Shard<T> {
    /// Positions in `slots`, hashed by their slot's digest.
    index: HashTable<u32>,
    // Invariant: every position in `index` holds `Some`, and every `Some` is in `index`.
    slots: Vec<Option<T>>,
    /// Positions of `None` slots, for reuse.
    free: Vec<u32>,
}

impl<T> Default for Shard<T> {
    fn default() -> Self {
        Self {
            index: HashTable::new(),
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

fn shard_of(key: &TokenHash) -> usize {
    usize::from(key.as_bytes()[0]) % SHARDS
}

fn hash_of(key: &TokenHash) -> u64 {
    let bytes = key.as_bytes();
    u64::from_le_bytes([
        bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15],
    ])
}

impl<T: Keyed> Default for Table<T> {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
        }
    }
}

impl<T: Keyed> Shard<T> {
    fn position(&self, key: &TokenHash) -> Option<u32> {
        let slots = &self.slots;
        self.index
            .find(hash_of(key), |&at| {
                slots[at as usize]
                    .as_ref()
                    .is_some_and(|it| it.key() == key)
            })
            .copied()
    }

    fn insert(&mut self, slot: T) {
        let hash = hash_of(slot.key());
        let at = match self.free.pop() {
            Some(at) => {
                self.slots[at as usize] = Some(slot);
                at
            }
            None => {
                self.slots.push(Some(slot));
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 tokens per shard")
            }
        };
        let slots = &self.slots;
        self.index.insert_unique(hash, at, |&at| {
            hash_of(slots[at as usize].as_ref().expect("indexed").key())
        });
    }
}

impl<T: Keyed> Table<T> {
    /// Calls `read` with the slot of `key`, if any, under the shard's read lock.
    pub fn read<R>(&self, key: &TokenHash, read: impl FnOnce(Option<&T>) -> R) -> R {
        let shard = self.shards[shard_of(key)]
            .read()
            .expect("table writers do not panic");
        let slot = shard
            .position(key)
            .and_then(|at| shard.slots[at as usize].as_ref());
        read(slot)
    }

    /// Calls `upsert` with the slot of `key` to change it, or with `None` to learn what to
    /// insert (nothing for `None`), under the shard's write lock.
    pub fn upsert(&self, key: &TokenHash, upsert: impl FnOnce(Option<&mut T>) -> Option<T>) {
        let mut shard = self.shards[shard_of(key)]
            .write()
            .expect("table writers do not panic");
        match shard.position(key) {
            Some(at) => {
                upsert(shard.slots[at as usize].as_mut());
            }
            None => {
                if let Some(slot) = upsert(None) {
                    shard.insert(slot);
                }
            }
        }
    }

    /// Makes room for about `additional` more slots in all, so a load does not grow step by step.
    pub fn reserve(&self, additional: usize) {
        let per_shard = additional.div_ceil(SHARDS);
        for shard in self.shards.iter() {
            let mut shard = shard.write().expect("table writers do not panic");
            let Shard { index, slots, .. } = &mut *shard;
            slots.reserve_exact(per_shard);
            index.reserve(per_shard, |&at| {
                hash_of(slots[at as usize].as_ref().expect("indexed").key())
            });
        }
    }

    /// Keeps only the slots for which `keep` is true; returns how many were removed.
    pub fn retain(&self, mut keep: impl FnMut(&T) -> bool) -> usize {
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.write().expect("table writers do not panic");
            let Shard { index, slots, free } = &mut *shard;
            index.retain(|at| {
                let slot = &mut slots[*at as usize];
                if slot.as_ref().is_some_and(&mut keep) {
                    return true;
                }
                *slot = None;
                free.push(*at);
                removed += 1;
                false
            });
        }
        removed
    }

    /// Calls `visit` with every slot, one shard at a time under its read lock.
    pub fn for_each(&self, mut visit: impl FnMut(&T)) {
        for shard in self.shards.iter() {
            let shard = shard.read().expect("table writers do not panic");
            shard.slots.iter().flatten().for_each(&mut visit);
        }
    }

    /// Returns how many slots the table holds.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                shard
                    .read()
                    .expect("table writers do not panic")
                    .index
                    .len()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Slot(TokenHash, u32);

    impl Keyed for Slot {
        fn key(&self) -> &TokenHash {
            &self.0
        }
    }

    fn key(n: u32) -> TokenHash {
        let mut bytes = [0; 32];
        bytes[..4].copy_from_slice(&n.to_le_bytes());
        bytes[8..12].copy_from_slice(&n.wrapping_mul(2_654_435_761).to_le_bytes());
        TokenHash::from_bytes(&bytes).expect("32 bytes")
    }

    fn value(table: &Table<Slot>, n: u32) -> Option<u32> {
        table.read(&key(n), |slot| slot.map(|it| it.1))
    }

    #[test]
    fn inserts_updates_and_removes_by_digest() {
        let table = Table::default();
        table.reserve(1000);
        for n in 0..1000 {
            table.upsert(&key(n), |slot| {
                assert!(slot.is_none(), "new key");
                Some(Slot(key(n), n))
            });
        }
        assert_eq!(table.len(), 1000);
        assert_eq!(value(&table, 7), Some(7));
        assert_eq!(value(&table, 1000), None);
        table.upsert(&key(8), |slot| {
            slot.expect("known key").1 = 80;
            None
        });
        assert_eq!(value(&table, 8), Some(80));
        assert_eq!(table.retain(|slot| slot.1 % 2 == 0), 500);
        assert_eq!((value(&table, 3), value(&table, 4)), (None, Some(4)));
        // Freed positions are reused, and every remaining slot is still found.
        for n in 1000..1500 {
            table.upsert(&key(n), |slot| {
                assert!(slot.is_none(), "new key");
                Some(Slot(key(n), n))
            });
        }
        assert_eq!(table.len(), 1000);
        for n in (0..1000).step_by(2).chain(1000..1500) {
            assert!(value(&table, n).is_some(), "{n}");
        }
        let mut seen = 0;
        table.for_each(|_| seen += 1);
        assert_eq!(seen, 1000);
    }
}
