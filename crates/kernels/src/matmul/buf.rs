//! [`AlignedBytes`]: a zero-initialized heap buffer starting on a 64-byte boundary (one cache
//! line, one AVX-512 register), for quantized activations and repacked weights.
//!
//! It is allocated with `alloc_zeroed`, so a large buffer comes straight from fresh zero pages:
//! no memset pass, and pages are faulted in by the first real write (the repacking), not twice.

use std::alloc::{Layout, alloc_zeroed, dealloc, handle_alloc_error};
use std::ptr::NonNull;

/// Alignment of every buffer.
const ALIGN: usize = 64;

/// A zero-initialized byte buffer starting on a 64-byte boundary.
pub(crate) struct AlignedBytes {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the buffer is uniquely owned plain bytes; sharing `&AlignedBytes` only allows reads.
unsafe impl Send for AlignedBytes {}
// SAFETY: as above.
unsafe impl Sync for AlignedBytes {}

impl AlignedBytes {
    /// `len` zero bytes.
    pub(crate) fn zeroed(len: usize) -> AlignedBytes {
        if len == 0 {
            return AlignedBytes::default();
        }
        let Ok(layout) = Layout::from_size_align(len, ALIGN) else {
            // Only a size near `isize::MAX` fails here; no such buffer could be allocated anyway.
            handle_alloc_error(Layout::new::<u8>())
        };
        // SAFETY: `layout` has a non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            handle_alloc_error(layout)
        };
        AlignedBytes { ptr, len }
    }

    /// Grows to at least `len` bytes (contents are not kept).
    pub(crate) fn ensure(&mut self, len: usize) {
        if self.len < len {
            *self = AlignedBytes::zeroed(len);
        }
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` points at `len` initialized bytes owned by `self` (or is dangling with
        // `len == 0`, valid for an empty slice).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, with exclusive access through `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Default for AlignedBytes {
    fn default() -> AlignedBytes {
        AlignedBytes {
            ptr: NonNull::<[u8; ALIGN]>::dangling().cast(),
            len: 0,
        }
    }
}

impl Drop for AlignedBytes {
    fn drop(&mut self) {
        if self.len != 0 {
            // SAFETY: allocated in `zeroed` with exactly this size and alignment (which made a
            // valid layout then).
            unsafe {
                dealloc(
                    self.ptr.as_ptr(),
                    Layout::from_size_align_unchecked(self.len, ALIGN),
                )
            };
        }
    }
}

impl std::fmt::Debug for AlignedBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedBytes({} bytes)", self.len)
    }
}
