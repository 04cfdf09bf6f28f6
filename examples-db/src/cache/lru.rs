//! An O(1) least-recently-used map: a `HashMap` of slab indices plus an
//! intrusive doubly linked list threaded through the slab.
//!
//! Every hit moves its node to the front with four index writes (no
//! allocation, no re-hashing), so LRU bookkeeping costs next to nothing on
//! the hot path. `moka` uses a smarter policy (TinyLFU admission); LRU is
//! the one everyone can reason about, and what the tests pin down.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

/// "No node" in the `prev`/`next` links.
const NIL: usize = usize::MAX;

struct Node<K, V> {
    /// `None` while the slot is on the free list.
    entry: Option<(K, V)>,
    /// Towards the most recently used end.
    prev: usize,
    /// Towards the least recently used end.
    next: usize,
}

/// A map that holds at most `capacity` entries and evicts the least
/// recently used one to make room.
pub(super) struct Lru<K, V> {
    index: HashMap<K, usize>,
    nodes: Vec<Node<K, V>>,
    free: Vec<usize>,
    /// Most recently used, or NIL when empty.
    head: usize,
    /// Least recently used (the next victim), or NIL when empty.
    tail: usize,
    capacity: usize,
}

impl<K: Hash + Eq + Clone, V> Lru<K, V> {
    /// An empty map; `capacity` must be at least 1 (the cache guarantees it).
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            index: HashMap::with_capacity(capacity),
            nodes: Vec::with_capacity(capacity),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            capacity,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.index.len()
    }

    /// The value for `key`, marked as just used.
    pub(super) fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let at = *self.index.get(key)?;
        self.move_to_front(at);
        self.nodes[at].entry.as_mut().map(|(_, value)| value)
    }

    /// Inserts or replaces `key` as the most recently used entry. Returns
    /// the entry evicted to make room, if any.
    pub(super) fn insert(&mut self, key: K, value: V) -> Option<(K, V)> {
        if let Some(&at) = self.index.get(&key) {
            self.nodes[at].entry = Some((key, value));
            self.move_to_front(at);
            return None;
        }
        let evicted = if self.index.len() >= self.capacity {
            self.pop_lru()
        } else {
            None
        };
        let node = Node {
            entry: Some((key.clone(), value)),
            prev: NIL,
            next: NIL,
        };
        // Reuse a freed slot before growing the slab.
        let at = match self.free.pop() {
            Some(at) => {
                self.nodes[at] = node;
                at
            }
            None => {
                self.nodes.push(node);
                self.nodes.len() - 1
            }
        };
        self.index.insert(key, at);
        self.push_front(at);
        evicted
    }

    /// Removes `key`, returning its value.
    pub(super) fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let at = self.index.remove(key)?;
        self.unlink(at);
        self.free.push(at);
        self.nodes[at].entry.take().map(|(_, value)| value)
    }

    /// Removes and returns the least recently used entry.
    fn pop_lru(&mut self) -> Option<(K, V)> {
        let at = self.tail;
        if at == NIL {
            return None;
        }
        self.unlink(at);
        self.free.push(at);
        let (key, value) = self.nodes[at].entry.take()?;
        self.index.remove(&key);
        Some((key, value))
    }

    fn move_to_front(&mut self, at: usize) {
        if self.head != at {
            self.unlink(at);
            self.push_front(at);
        }
    }

    fn unlink(&mut self, at: usize) {
        let (prev, next) = (self.nodes[at].prev, self.nodes[at].next);
        match prev {
            NIL => self.head = next,
            prev => self.nodes[prev].next = next,
        }
        match next {
            NIL => self.tail = prev,
            next => self.nodes[next].prev = prev,
        }
    }

    fn push_front(&mut self, at: usize) {
        self.nodes[at].prev = NIL;
        self.nodes[at].next = self.head;
        match self.head {
            NIL => self.tail = at,
            head => self.nodes[head].prev = at,
        }
        self.head = at;
    }
}
