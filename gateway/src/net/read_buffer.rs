//! A connection's read buffer, sized to what the connection is doing.
//!
//! A connection between frames (most of a fleet, most of the time) holds a
//! small buffer: a read into an empty buffer gets [`MIN_CHUNK`] bytes of
//! room, enough for a frame header, after which the session reserves room
//! for the whole frame once its header passed the length check. A buffer
//! holding part of a frame reads in chunks that double after every read that
//! filled its room, up to [`MAX_CHUNK`], and halve after reads that used
//! little of it, so a busy connection reads many frames per call. After the
//! session took what it could, the buffer gives memory back: an empty one
//! is freed, and a small remainder in a large allocation (after a large
//! frame) is moved to a small one. So a
//! connection's buffer is at most one frame plus a chunk while it reads, and
//! [`MIN_CHUNK`] while it waits.

use bytes::BytesMut;

/// The room of a read into an empty buffer: what a connection holds while it waits.
pub const MIN_CHUNK: usize = 128;
/// The largest read a busy connection makes at once.
pub const MAX_CHUNK: usize = 64 * 1024;

/// See the module documentation.
#[derive(Debug)]
pub struct ReadBuffer {
    buf: BytesMut,
    chunk: usize,
    /// Free room before the last read.
    room: usize,
}

impl Default for ReadBuffer {
    fn default() -> Self {
        ReadBuffer::new()
    }
}

impl ReadBuffer {
    /// An empty buffer; nothing is allocated until the first read.
    pub fn new() -> ReadBuffer {
        ReadBuffer {
            buf: BytesMut::new(),
            chunk: MIN_CHUNK,
            room: 0,
        }
    }

    /// The bytes read and not yet consumed.
    pub fn bytes(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// The buffer to read into: [`MIN_CHUNK`] of room if it is empty, else
    /// at least a chunk.
    pub fn for_read(&mut self) -> &mut BytesMut {
        let want = if self.buf.is_empty() { MIN_CHUNK } else { self.chunk };
        if self.buf.capacity() - self.buf.len() < want {
            self.buf.reserve(want);
        }
        self.room = self.buf.capacity() - self.buf.len();
        &mut self.buf
    }

    /// Takes the buffer out, to read into it while the owner is borrowed
    /// elsewhere; give it back with [`ReadBuffer::put_back`].
    pub fn take_for_read(&mut self) -> BytesMut {
        self.for_read();
        std::mem::take(&mut self.buf)
    }

    /// Returns the buffer taken with [`ReadBuffer::take_for_read`].
    pub fn put_back(&mut self, buf: BytesMut) {
        self.buf = buf;
    }

    /// After a read of `n` bytes: grow the chunk if the read filled its room,
    /// shrink it if it used little of it.
    pub fn read_done(&mut self, n: usize) {
        if n >= self.room {
            self.chunk = (self.chunk * 2).min(MAX_CHUNK);
        } else if n < self.chunk / 4 {
            self.chunk = (self.chunk / 2).max(MIN_CHUNK);
        }
    }

    /// After the consumer took what it could: give back memory that only a
    /// larger read or frame needed.
    pub fn settle(&mut self) {
        let capacity = self.buf.capacity();
        if self.buf.is_empty() {
            // Always freed: its room may be the tail of a larger allocation
            // (a frame's), which a later reserve would take back whole.
            self.buf = BytesMut::new();
        } else if capacity > 4 * self.buf.len().max(self.chunk) {
            let mut smaller = BytesMut::with_capacity(self.buf.len().max(self.chunk));
            smaller.extend_from_slice(&self.buf);
            self.buf = smaller;
        }
    }

    /// The buffer's allocation, bytes.
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Buf;

    use super::*;

    #[test]
    fn a_quiet_connection_keeps_a_small_buffer() {
        let mut r = ReadBuffer::new();
        assert_eq!(r.capacity(), 0);
        let buf = r.for_read();
        assert!(buf.capacity() >= MIN_CHUNK && buf.capacity() < 2 * MIN_CHUNK);
        buf.extend_from_slice(&[0; 100]);
        r.read_done(100);
        r.bytes().clear();
        r.settle();
        assert!(r.capacity() < 2 * MIN_CHUNK);
    }

    #[test]
    fn busy_reads_grow_the_chunk_and_quiet_ones_shrink_it() {
        let mut r = ReadBuffer::new();
        // Reads that fill their room, each leaving part of a frame behind.
        for _ in 0..12 {
            let room = {
                let buf = r.for_read();
                buf.capacity() - buf.len()
            };
            r.bytes().extend_from_slice(&vec![0; room]);
            r.read_done(room);
            let keep = r.bytes().len() - 1;
            r.bytes().advance(keep);
            r.settle();
        }
        assert_eq!(r.chunk, MAX_CHUNK);
        assert!(
            r.for_read().capacity() >= MAX_CHUNK,
            "a partial frame reads a whole chunk"
        );
        for _ in 0..12 {
            r.for_read().extend_from_slice(&[0; 10]);
            r.read_done(10);
            let keep = r.bytes().len() - 1;
            r.bytes().advance(keep);
            r.settle();
        }
        assert_eq!(r.chunk, MIN_CHUNK);
        r.bytes().clear();
        r.settle();
        assert!(r.capacity() <= 2 * MIN_CHUNK);
        // Between frames, whatever the chunk, a read gets a small room.
        r.chunk = MAX_CHUNK;
        assert!(r.for_read().capacity() < 2 * MIN_CHUNK);
    }

    #[test]
    fn a_large_frame_leaves_no_large_buffer_behind() {
        let mut r = ReadBuffer::new();
        r.for_read();
        // The session reserves room for a 1 MiB frame, which arrives whole
        // with 100 bytes of the next frame behind it.
        r.bytes().reserve(1 << 20);
        r.bytes().extend_from_slice(&vec![1; (1 << 20) + 100]);
        let frame = r.bytes().split_to(1 << 20);
        drop(frame);
        r.settle();
        assert_eq!(r.bytes().len(), 100);
        assert!(r.capacity() < 4 * 1024, "{}", r.capacity());
        r.bytes().clear();
        r.settle();
        assert!(r.capacity() <= 2 * MIN_CHUNK);
    }
}
