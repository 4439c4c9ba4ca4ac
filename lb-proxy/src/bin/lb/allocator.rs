//! The daemon's global allocator: mimalloc instead of glibc's malloc, with plain `mi_malloc`
//! for word-aligned layouts and a short purge delay (why, and what each saves:
//! docs/performance.md, item 13). Only the binary sets it: `lb-proxy` as a library leaves the
//! allocator to its user.
use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as ffi;

/// The alignment of every block mimalloc hands out (`MI_INTPTR_SIZE`).
const WORD: usize = std::mem::size_of::<usize>();

pub struct MiMalloc;

/// `mi_option_purge_delay` in mimalloc's `mi_option_e` (the Rust bindings do not name it).
const OPTION_PURGE_DELAY: ffi::mi_option_t = 15;
/// How long freed pages wait before they go back to the OS, in milliseconds: mimalloc purges
/// only when it is next called, so after a burst that fell idle its default of 1 s left the
/// burst's pages resident (docs/performance.md, item 13).
const PURGE_DELAY_MS: std::ffi::c_long = 100;

/// Sets mimalloc's options; call first thing in `main`.
pub fn configure() {
    // SAFETY: a plain C call with a valid option and value.
    unsafe { ffi::mi_option_set(OPTION_PURGE_DELAY, PURGE_DELAY_MS) }
}

// SAFETY: mimalloc returns blocks of at least the requested size, aligned to `WORD` always
// and to `layout.align()` through the `_aligned` calls; null on failure, as `GlobalAlloc`
// requires. `mi_free` and `mi_realloc*` accept any pointer mimalloc returned.
unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: plain C allocation calls; see the impl's comment.
        unsafe {
            if layout.align() <= WORD {
                ffi::mi_malloc(layout.size()).cast()
            } else {
                ffi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        unsafe {
            if layout.align() <= WORD {
                ffi::mi_zalloc(layout.size()).cast()
            } else {
                ffi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator (GlobalAlloc's contract).
        unsafe { ffi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout` (GlobalAlloc's contract).
        unsafe {
            if layout.align() <= WORD {
                ffi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                ffi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_delay_is_the_option_it_is_named_after() {
        // mimalloc's default purge delay is 1,000 ms; no neighbouring option defaults to it.
        // SAFETY: plain C calls with a valid option.
        unsafe {
            assert_eq!(ffi::mi_option_get(OPTION_PURGE_DELAY), 1000);
            configure();
            assert_eq!(ffi::mi_option_get(OPTION_PURGE_DELAY), PURGE_DELAY_MS);
        }
    }

    #[test]
    fn blocks_honour_size_and_alignment_through_realloc() {
        let allocator = MiMalloc;
        for (size, align) in [
            (1, 1),
            (24, 8),
            (24, 16),
            (4096, 8),
            (9000, 128),
            (40, 4096),
        ] {
            let layout = Layout::from_size_align(size, align).unwrap();
            // SAFETY: layouts of non-zero size; each block is freed with its own layout.
            unsafe {
                let block = allocator.alloc_zeroed(layout);
                assert!(!block.is_null());
                assert_eq!(block as usize % align, 0, "{size} bytes aligned to {align}");
                assert!(
                    std::slice::from_raw_parts(block, size)
                        .iter()
                        .all(|&byte| byte == 0)
                );
                block.write_bytes(0xab, size);
                let grown = allocator.realloc(block, layout, size * 3);
                assert_eq!(
                    grown as usize % align,
                    0,
                    "grown {size} bytes aligned to {align}"
                );
                assert!(
                    std::slice::from_raw_parts(grown, size)
                        .iter()
                        .all(|&byte| byte == 0xab)
                );
                allocator.dealloc(grown, Layout::from_size_align(size * 3, align).unwrap());
            }
        }
    }
}
