//! Large tables on 2 MiB huge pages: the flow cache and megaflow table are read at random by
//! every packet, and at a million flows their pages outnumber the TLB's entries many times over
//! (each lookup then pays a page walk; measured, huge pages took a million-flow, 100-rule run
//! from 5.3 to 6.3 Mpps). Falls back to the ordinary heap when huge pages are short: a table
//! never takes the last [`RESERVE_PAGES`], which DPDK processes starting later may need.

use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

const HUGE_PAGE: usize = 2 << 20;

/// Tables smaller than this stay on the heap (the TLB covers them anyway).
const HUGE_MIN_BYTES: usize = 8 << 20;

/// Free huge pages a table leaves to others (512 MiB).
pub const RESERVE_PAGES: usize = 256;

/// A fixed-size slice, on huge pages when it is large and some are free.
pub struct HugeSlice<T> {
    ptr: NonNull<T>,
    len: usize,
    /// Mapped bytes when on huge pages (`None`: a boxed slice from the heap).
    mapped: Option<usize>,
}

// SAFETY: a HugeSlice owns its elements like a Box<[T]> does.
unsafe impl<T: Send> Send for HugeSlice<T> {}
// SAFETY: as Box<[T]>: shared access hands out only &T.
unsafe impl<T: Sync> Sync for HugeSlice<T> {}

impl<T> HugeSlice<T> {
    /// `len` elements, element `i` being `init(i)`.
    pub fn new(len: usize, mut init: impl FnMut(usize) -> T) -> Self {
        let bytes = len.saturating_mul(std::mem::size_of::<T>());
        let mapped = bytes.div_ceil(HUGE_PAGE) * HUGE_PAGE;
        if bytes >= HUGE_MIN_BYTES
            && std::mem::align_of::<T>() <= HUGE_PAGE
            && free_huge_pages() >= mapped / HUGE_PAGE + RESERVE_PAGES
        {
            // SAFETY: an anonymous private mapping of fresh memory; no existing memory is touched.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    mapped,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB,
                    -1,
                    0,
                )
            };
            if p != libc::MAP_FAILED {
                let ptr = p.cast::<T>();
                for i in 0..len {
                    // SAFETY: `i < len`, within the mapping (aligned: huge-page aligned base and
                    // `align_of::<T>()` divides `size_of::<T>()`); each slot is written once.
                    unsafe { ptr.add(i).write(init(i)) };
                }
                // SAFETY: mmap succeeded, so `p` is not null.
                return Self { ptr: unsafe { NonNull::new_unchecked(ptr) }, len, mapped: Some(mapped) };
            }
            log::debug!("no free huge pages for a {} MiB table: using the heap", bytes >> 20);
        }
        let boxed: Box<[T]> = (0..len).map(&mut init).collect();
        let len = boxed.len();
        let ptr = NonNull::from(Box::leak(boxed)).cast::<T>();
        Self { ptr, len, mapped: None }
    }

    /// Whether it lives on huge pages.
    pub fn on_huge_pages(&self) -> bool {
        self.mapped.is_some()
    }
}

/// Free 2 MiB huge pages (0 when unknown).
fn free_huge_pages() -> usize {
    let Ok(meminfo) = std::fs::read_to_string("/proc/meminfo") else { return 0 };
    let field = |name: &str| {
        meminfo.lines().find_map(|l| l.strip_prefix(name)?.trim().split(' ').next()?.parse::<usize>().ok())
    };
    match (field("Hugepagesize:"), field("HugePages_Free:")) {
        (Some(2048), Some(free)) => free,
        _ => 0,
    }
}

impl<T> Deref for HugeSlice<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        // SAFETY: `ptr` points at `len` initialised elements that live as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> DerefMut for HugeSlice<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as for `deref`, and `&mut self` makes this the only reference to them.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> Drop for HugeSlice<T> {
    fn drop(&mut self) {
        let elems = std::ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), self.len);
        match self.mapped {
            Some(bytes) => {
                // SAFETY: the elements were initialised and are dropped once, here; then the
                // mapping we created is unmapped and never used again.
                unsafe {
                    std::ptr::drop_in_place(elems);
                    libc::munmap(self.ptr.as_ptr().cast(), bytes);
                }
            }
            // SAFETY: the pointer came from Box::leak of a boxed slice of `len` elements.
            None => drop(unsafe { Box::from_raw(elems) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn small_slices_live_on_the_heap_and_hold_what_init_made() {
        let s = HugeSlice::new(1000, |i| i as u64 * 3);
        assert!(!s.on_huge_pages());
        assert_eq!(s.len(), 1000);
        assert!(s.iter().enumerate().all(|(i, &v)| v == i as u64 * 3));
    }

    #[test]
    fn large_slices_hold_what_init_made_and_drop_every_element() {
        let shared = Arc::new(());
        let n = HUGE_MIN_BYTES / std::mem::size_of::<Arc<()>>() + 1;
        let free_before = free_huge_pages();
        let s = HugeSlice::new(n, |_| Arc::clone(&shared));
        // On huge pages when plenty are free (as where setup.sh reserved them), else on the heap.
        if free_before >= RESERVE_PAGES + 64 {
            assert!(s.on_huge_pages(), "{free_before} huge pages were free");
        }
        assert_eq!(Arc::strong_count(&shared), n + 1);
        assert!(s.iter().all(|a| Arc::ptr_eq(a, &shared)));
        drop(s);
        assert_eq!(Arc::strong_count(&shared), 1, "every element dropped exactly once");
    }

    #[test]
    fn reads_free_huge_pages_from_meminfo() {
        let want = std::fs::read_to_string("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .unwrap_or(0);
        // Other processes may take or release pages meanwhile; only sanity here.
        let got = free_huge_pages();
        assert!(got.abs_diff(want) < 512, "meminfo {got}, sysfs {want}");
    }
}
