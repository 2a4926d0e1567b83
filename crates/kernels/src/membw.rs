//! The memory's streaming-read bandwidth, measured with a thread pool: the physical floor of
//! decoding, which reads every weight once per token (`hearth bench` reports the ratio).

use std::time::{Duration, Instant};

#[cfg(target_arch = "x86_64")]
use crate::isa::Isa;
use crate::pool::ThreadPool;

/// Reads `buf` once, split into equal parts over the pool's threads (wide loads, XOR-reduced so
/// the reads cannot be optimized away); returns the reduction.
pub fn stream_read(pool: &ThreadPool, buf: &[u8]) -> u64 {
    let out = std::sync::atomic::AtomicU64::new(0);
    pool.run(|i, n| {
        let lines = buf.len() / 64;
        let part = &buf[lines * i / n * 64..lines * (i + 1) / n * 64];
        out.fetch_xor(xor_reduce(part), std::sync::atomic::Ordering::Relaxed);
    });
    out.into_inner()
}

/// Reads every buffer of `bufs` once in one hand-off, each split into equal parts over the pool's
/// threads (as [`stream_read`] splits one): the reads of one `matmul_many`, without the
/// arithmetic.
pub fn stream_read_many(pool: &ThreadPool, bufs: &[&[u8]]) -> u64 {
    let out = std::sync::atomic::AtomicU64::new(0);
    pool.run(|i, n| {
        let mut x = 0;
        for buf in bufs {
            let lines = buf.len() / 64;
            x ^= xor_reduce(&buf[lines * i / n * 64..lines * (i + 1) / n * 64]);
        }
        out.fetch_xor(x, std::sync::atomic::Ordering::Relaxed);
    });
    out.into_inner()
}

/// A `bytes`-long buffer of non-zero bytes (so its pages are really backed and read), allocated
/// as repacked weights are: on huge pages where the system gives them, so a streaming read of
/// it is the floor for weights streamed by decode.
pub fn stream_buffer(bytes: usize) -> StreamBuffer {
    let mut buf = crate::matmul::buf::AlignedBytes::for_weights(bytes);
    for (i, b) in buf.as_mut_slice().iter_mut().enumerate() {
        *b = (i as u8) | 1;
    }
    StreamBuffer(buf)
}

/// The buffer [`stream_buffer`] makes.
#[derive(Debug)]
pub struct StreamBuffer(crate::matmul::buf::AlignedBytes);

impl std::ops::Deref for StreamBuffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.0.as_slice()
    }
}

/// Streaming-read bandwidth in bytes per second: the median of repeated [`stream_read`]s of a
/// `bytes`-long buffer (make it several times the last-level cache to measure DRAM), repeated
/// for at least `min_time`.
pub fn read_bandwidth(pool: &ThreadPool, bytes: usize, min_time: Duration) -> f64 {
    let buf = stream_buffer(bytes);
    std::hint::black_box(stream_read(pool, &buf));
    let mut secs = Vec::new();
    let start = Instant::now();
    while secs.len() < 5 || (start.elapsed() < min_time && secs.len() < 1000) {
        let t = Instant::now();
        std::hint::black_box(stream_read(pool, &buf));
        secs.push(t.elapsed().as_secs_f64());
    }
    secs.sort_by(f64::total_cmp);
    bytes as f64 / secs[secs.len() / 2]
}

fn xor_reduce(part: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if Isa::best_supported() >= Isa::Avx2 {
        // SAFETY: AVX2 is supported.
        return unsafe { xor_reduce_avx2(part) };
    }
    xor_reduce_scalar(part)
}

fn xor_reduce_scalar(part: &[u8]) -> u64 {
    part.chunks_exact(8).fold(0u64, |a, c| {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        a ^ u64::from_le_bytes(w)
    })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn xor_reduce_avx2(part: &[u8]) -> u64 {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_setzero_si256(); 4];
    let chunks = part.chunks_exact(128);
    let tail = xor_reduce_scalar(chunks.remainder());
    for c in chunks {
        for (k, a) in acc.iter_mut().enumerate() {
            // SAFETY: each 128-byte chunk holds four 32-byte loads.
            *a = _mm256_xor_si256(*a, unsafe {
                _mm256_loadu_si256(c.as_ptr().add(32 * k).cast())
            });
        }
    }
    let x = _mm256_xor_si256(
        _mm256_xor_si256(acc[0], acc[1]),
        _mm256_xor_si256(acc[2], acc[3]),
    );
    (_mm256_extract_epi64::<0>(x)
        ^ _mm256_extract_epi64::<1>(x)
        ^ _mm256_extract_epi64::<2>(x)
        ^ _mm256_extract_epi64::<3>(x)) as u64
        ^ tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_read_covers_every_whole_line_once() {
        let pool = ThreadPool::new(2);
        let mut buf = vec![0u8; 64 * 37];
        buf[64 * 36 + 8] = 0x5a; // in the last line
        assert_eq!(stream_read(&pool, &buf), 0x5a);
        buf[64] = 0x5a; // in the first thread's part, same lane: cancels in the XOR
        assert_eq!(stream_read(&pool, &buf), 0);
    }
}
