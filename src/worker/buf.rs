//! Byte buffers for the relay: storage is borrowed from a per-worker free list while a
//! connection has bytes in flight and handed back when it empties, so idle clients hold no
//! buffer memory and busy ones allocate nothing per message.

use std::io::{self, Read, Write};

const CHUNK: usize = 16 * 1024;
/// Buffers that grew past this (a huge message) are freed rather than kept in the list.
const KEEP_MAX: usize = 256 * 1024;
/// Enough spare buffers for a burst of busy connections; beyond it they go back to the
/// allocator, so one burst of 10,000 waiting queries does not stay resident for good.
const FREE_LIST_MAX: usize = 256;
/// A message's length field is only a claim: room beyond this is made as its bytes
/// arrive, so a client announcing a huge message and sending little costs little.
const RESERVE_AHEAD_MAX: usize = 1024 * 1024;

#[derive(Default)]
pub struct BufPool {
    free: Vec<Vec<u8>>,
    /// The fewest spare buffers since the last [`BufPool::trim`]: that many went unused
    /// the whole time.
    low_water: usize,
}

impl BufPool {
    fn get(&mut self) -> Vec<u8> {
        let v = self.free.pop().unwrap_or_else(|| vec![0; CHUNK]);
        self.low_water = self.low_water.min(self.free.len());
        v
    }

    /// Frees the spare buffers nobody needed since the last call, so the memory of a past
    /// burst goes back to the system while a steady load keeps its list. Returns whether
    /// anything was freed.
    pub fn trim(&mut self) -> bool {
        let unused = self.low_water.min(self.free.len());
        self.free.truncate(self.free.len() - unused);
        self.free.shrink_to(self.free.len().max(16));
        self.low_water = self.free.len();
        if unused > 0 {
            give_back_free_heap();
        }
        unused > 0
    }

    fn put(&mut self, v: Vec<u8>) {
        if v.len() <= KEEP_MAX && self.free.len() < FREE_LIST_MAX {
            self.free.push(v);
        }
    }
}

/// glibc keeps freed small blocks in its heap for reuse; after a burst is over, ask it
/// to hand the free pages back so the resident size follows the load down.
fn give_back_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own free lists; no pointer of ours is involved.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// `data` is fully initialised (len == usable size); `start..end` holds the pending bytes.
#[derive(Default)]
pub struct Buf {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

pub enum ReadOutcome {
    /// Bytes were read. `short`: fewer than there was room for, so a plain socket had
    /// nothing more at that moment; with edge-triggered readiness a later arrival brings
    /// a new event, and the read that would only say WouldBlock can be skipped.
    Data {
        short: bool,
    },
    WouldBlock,
    Eof,
}

impl Buf {
    pub fn pending(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    pub fn consume(&mut self, n: usize) {
        self.start += n.min(self.len());
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Gives the storage back to the worker's list once nothing is pending.
    pub fn release_if_empty(&mut self, pool: &mut BufPool) {
        if self.is_empty() && !self.data.is_empty() {
            pool.put(std::mem::take(&mut self.data));
            self.start = 0;
            self.end = 0;
        }
    }

    fn make_room(&mut self, pool: &mut BufPool, want: usize) {
        if self.data.is_empty() {
            self.data = pool.get();
        }
        if self.data.len() - self.end >= want {
            return;
        }
        if self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.data.len() - self.end < want {
            let new_len = (self.end + want).max(self.data.len() * 2);
            self.data.resize(new_len, 0);
        }
    }

    /// Ensures the buffer can hold a whole message of `total` bytes starting at `start`.
    pub fn reserve_message(&mut self, pool: &mut BufPool, total: usize) {
        if total > self.data.len().saturating_sub(self.start) {
            let want = (total - self.len()).min(RESERVE_AHEAD_MAX);
            self.make_room(pool, want);
        }
    }

    pub fn extend(&mut self, pool: &mut BufPool, bytes: &[u8]) {
        self.make_room(pool, bytes.len());
        self.data[self.end..self.end + bytes.len()].copy_from_slice(bytes);
        self.end += bytes.len();
    }

    /// One read(2) into the free space (at least 4 KiB made available).
    pub fn read_from(
        &mut self,
        pool: &mut BufPool,
        src: &mut impl Read,
    ) -> io::Result<ReadOutcome> {
        self.make_room(pool, 4096);
        let room = self.data.len() - self.end;
        match src.read(&mut self.data[self.end..]) {
            Ok(0) => Ok(ReadOutcome::Eof),
            Ok(n) => {
                self.end += n;
                Ok(ReadOutcome::Data { short: n < room })
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(ReadOutcome::WouldBlock),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                Ok(ReadOutcome::Data { short: false })
            }
            Err(e) => Err(e),
        }
    }

    /// Writes until empty or WouldBlock; returns whether everything went out.
    pub fn write_to(&mut self, dst: &mut impl Write) -> io::Result<bool> {
        while !self.is_empty() {
            match dst.write(&self.data[self.start..self.end]) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "peer closed")),
                Ok(n) => self.consume(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extend_consume_and_grow() {
        let mut pool = BufPool::default();
        let mut b = Buf::default();
        b.extend(&mut pool, b"hello");
        b.consume(2);
        assert_eq!(b.pending(), b"llo");
        let big = vec![7u8; 40_000];
        b.extend(&mut pool, &big);
        assert_eq!(b.len(), 40_003);
        b.extend(&mut pool, b"!");
        assert_eq!(b.len(), 40_004);
        assert_eq!(*b.pending().last().unwrap(), b'!');
        b.consume(40_004);
        b.release_if_empty(&mut pool);
        assert!(b.data.is_empty());
    }

    #[test]
    fn read_and_write() {
        let mut pool = BufPool::default();
        let mut b = Buf::default();
        let mut src: &[u8] = b"abc";
        assert!(matches!(
            b.read_from(&mut pool, &mut src).unwrap(),
            ReadOutcome::Data { short: true }
        ));
        assert!(matches!(
            b.read_from(&mut pool, &mut src).unwrap(),
            ReadOutcome::Eof
        ));
        let mut out = Vec::new();
        assert!(b.write_to(&mut out).unwrap());
        assert_eq!(out, b"abc");
    }

    #[test]
    fn trim_frees_only_what_an_interval_left_unused() {
        let mut pool = BufPool::default();
        let mut held: Vec<Buf> = (0..10).map(|_| Buf::default()).collect();
        for b in &mut held {
            b.extend(&mut pool, b"x");
        }
        for b in &mut held {
            b.consume(1);
            b.release_if_empty(&mut pool);
        }
        assert_eq!(pool.free.len(), 10);
        // The burst is over, but the interval it happened in used every buffer.
        pool.low_water = 0;
        assert!(!pool.trim());
        assert_eq!(pool.free.len(), 10);
        // A steady load of 3 busy connections through the next interval.
        for b in held.iter_mut().take(3) {
            b.extend(&mut pool, b"x");
        }
        assert!(pool.trim());
        assert_eq!(pool.free.len(), 0);
        for b in held.iter_mut().take(3) {
            b.consume(1);
            b.release_if_empty(&mut pool);
        }
        assert_eq!(pool.free.len(), 3);
    }
}
