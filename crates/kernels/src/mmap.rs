//! The one memory-mapping wrapper: a read-only view of a whole file (or of a buffer built in
//! memory that stands in for one, `Mmap::from_vec`).

use std::fs::File;
use std::io;
use std::path::Path;

/// A file mapped read-only into memory, dereferencing to its bytes.
#[derive(Debug)]
pub struct Mmap {
    map: Option<memmap2::Mmap>,
    /// The bytes of a file built in memory (`from_vec`), 64-byte aligned like a mapping's
    /// start, and their length.
    owned: Vec<Aligned>,
    owned_len: usize,
}

#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
struct Aligned([u8; 64]);

impl Mmap {
    /// Maps `path` read-only. An empty file gives an empty slice (mapping zero bytes fails on
    /// some systems, so none is made).
    pub fn open(path: &Path) -> io::Result<Mmap> {
        let file = File::open(path)?;
        if file.metadata()?.len() == 0 {
            return Ok(Mmap::from_vec(Vec::new()));
        }
        // SAFETY: the mapping is read-only and lives as long as this value. Another process
        // truncating or rewriting the file while it is mapped could change or fault the bytes
        // under us; like every program that maps model files (llama.cpp included), we accept
        // that model files are not modified while in use.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Ok(Mmap {
            map: Some(map),
            owned: Vec::new(),
            owned_len: 0,
        })
    }

    /// A file's bytes built in memory (a GGUF file converted on the fly), copied into an
    /// aligned buffer so that everything a mapping allows (aligned views of tensor data) holds.
    /// `release` does nothing for it.
    pub fn from_vec(bytes: Vec<u8>) -> Mmap {
        let mut owned = vec![Aligned([0; 64]); bytes.len().div_ceil(64)];
        for (chunk, src) in owned.iter_mut().zip(bytes.chunks(64)) {
            chunk.0[..src.len()].copy_from_slice(src);
        }
        Mmap {
            map: None,
            owned,
            owned_len: bytes.len(),
        }
    }

    /// Tells the kernel the pages of `range` will not be read again (a copy of them lives
    /// elsewhere), so they stop counting toward this process's resident memory. Reading them
    /// later is still correct: they are read back from the file. Partial pages at the ends are
    /// kept; errors are ignored (it is only advice).
    pub fn release(&self, range: std::ops::Range<usize>) {
        #[cfg(unix)]
        if let Some(m) = &self.map {
            const PAGE: usize = 4096;
            let start = range.start.next_multiple_of(PAGE);
            let end = range.end.min(m.len()) / PAGE * PAGE;
            if end > start {
                // SAFETY: DONTNEED on a read-only file mapping only drops pages from memory;
                // the mapping stays valid and its contents are re-read from the file on access.
                let _ = unsafe {
                    m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
                };
            }
        }
        #[cfg(not(unix))]
        let _ = range;
    }

    /// Asks the kernel to read the whole mapping ahead (a hint; errors are ignored).
    pub fn advise_sequential(&self) {
        #[cfg(unix)]
        if let Some(m) = &self.map {
            let _ = m.advise(memmap2::Advice::WillNeed);
        }
    }
}

impl std::ops::Deref for Mmap {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.map {
            Some(m) => m,
            None => {
                let ptr = self.owned.as_ptr().cast::<u8>();
                // SAFETY: `owned` is `owned.len() * 64` initialized bytes (`Aligned` is a
                // `repr(C)` byte array without padding), of which the first `owned_len` are the
                // file; the slice borrows `self`, so the vector outlives it and is not mutated.
                unsafe { std::slice::from_raw_parts(ptr, self.owned_len) }
            }
        }
    }
}

/// Drops the file's pages from the operating system's page cache, so the next read comes from
/// the disk (for cold-load measurements). Dirty pages are not written first: only use it on
/// files that are not being written.
#[cfg(unix)]
pub fn evict_from_page_cache(path: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let file = File::open(path)?;
    // SAFETY: `posix_fadvise` only reads its integer arguments; the descriptor is open for the
    // whole call because `file` lives until the end of this function.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// Not available on this platform.
#[cfg(not(unix))]
pub fn evict_from_page_cache(_path: &Path) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "page-cache eviction is not supported here",
    ))
}

#[cfg(test)]
mod tests {
    use super::Mmap;

    #[test]
    fn a_buffer_from_vec_reads_back_aligned() {
        for n in [0usize, 1, 63, 64, 65, 1000] {
            let bytes: Vec<u8> = (0..n).map(|i| (i * 7) as u8).collect();
            let map = Mmap::from_vec(bytes.clone());
            assert_eq!(&map[..], &bytes[..]);
            assert_eq!(map.as_ptr() as usize % 64, 0);
            map.release(0..n);
            assert_eq!(&map[..], &bytes[..]);
        }
    }
}
