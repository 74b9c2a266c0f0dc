//! Pending output of one connection, and a loop-wide pool of spare buffers so that a
//! connection owns heap memory only while it has unsent bytes.

use std::io::{self, Write};

/// Bytes queued for a socket: `buf[head..]` is unsent.
#[derive(Debug, Default)]
pub struct WriteBuffer {
    buf: Vec<u8>,
    head: usize,
}

impl WriteBuffer {
    /// Unsent bytes (the browser's `bufferedAmount`).
    /// Unsent bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.buf.len() - self.head
    }

    /// Whether every byte was sent.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.buf.len() == self.head
    }

    /// Heap bytes held.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// The vector to append to; takes a spare buffer from `pool` if this one holds none.
    #[inline]
    pub fn append(&mut self, pool: &mut BufferPool) -> &mut Vec<u8> {
        if self.buf.capacity() == 0 {
            self.buf = pool.take();
        } else if self.head > 0 && self.head >= self.buf.len() / 2 {
            self.buf.drain(..self.head);
            self.head = 0;
        }
        &mut self.buf
    }

    /// Writes as much as the socket takes. Returns `Ok(true)` when everything went out
    /// (the buffer is then returned to `pool`), `Ok(false)` when the kernel refused the rest.
    pub fn flush<W: Write>(&mut self, w: &mut W, pool: &mut BufferPool) -> io::Result<bool> {
        while self.head < self.buf.len() {
            match w.write(&self.buf[self.head..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.head += n;
                    if self.head < self.buf.len() {
                        // A short write means the send buffer is full: the next write
                        // would only return EAGAIN, so wait for WRITABLE instead.
                        return Ok(false);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.release(pool);
        Ok(true)
    }

    /// Drops any unsent bytes and returns the buffer to the pool.
    pub fn release(&mut self, pool: &mut BufferPool) {
        self.head = 0;
        pool.put(std::mem::take(&mut self.buf));
    }
}

/// Spare buffers, so a busy connection does not allocate per message and an idle one
/// holds nothing. Bounded in count and in the size of buffer it keeps.
#[derive(Debug, Default)]
pub struct BufferPool {
    spare: Vec<Vec<u8>>,
}

const POOL_MAX_BUFFERS: usize = 256;
const POOL_MAX_CAPACITY: usize = 64 << 10;

impl BufferPool {
    /// A spare buffer (empty, maybe with capacity), or a new one.
    #[inline]
    pub fn take(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_default()
    }

    /// Returns a buffer for reuse; kept only if small enough and the pool not full.
    #[inline]
    pub fn put(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() == 0
            || buf.capacity() > POOL_MAX_CAPACITY
            || self.spare.len() >= POOL_MAX_BUFFERS
        {
            return;
        }
        buf.clear();
        self.spare.push(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that accepts at most `room` bytes, then WouldBlock.
    struct Throttled {
        got: Vec<u8>,
        room: usize,
    }

    impl Write for Throttled {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = b.len().min(self.room);
            self.room -= n;
            self.got.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn keeps_what_the_kernel_refuses_and_frees_when_empty() {
        let mut pool = BufferPool::default();
        let mut wb = WriteBuffer::default();
        wb.append(&mut pool).extend_from_slice(b"hello world");
        let mut w = Throttled {
            got: vec![],
            room: 5,
        };
        assert!(!wb.flush(&mut w, &mut pool).unwrap());
        assert_eq!(wb.len(), 6);
        wb.append(&mut pool).extend_from_slice(b"!");
        w.room = 100;
        assert!(wb.flush(&mut w, &mut pool).unwrap());
        assert_eq!(w.got, b"hello world!");
        assert_eq!(wb.capacity(), 0, "an empty buffer holds no heap memory");
        assert_eq!(pool.spare.len(), 1);
    }
}
