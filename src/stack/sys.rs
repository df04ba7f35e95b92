//! The stack allocator's only contact with the operating system: anonymous
//! mappings (plain, aligned, or reservations used a part at a time),
//! unmapping, giving pages back (decommit), and page protection.
//! Everything here works on whole pages; the page size is read once at run
//! time (it is not 4096 on every aarch64 kernel).

use std::sync::atomic::{AtomicUsize, Ordering};

static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);

/// The system page size in bytes, a power of two.
///
/// May be called from any thread at any time; the first call asks the
/// system and later calls return the remembered answer.
pub fn page_size() -> usize {
    let cached = PAGE_SIZE.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    // SAFETY: sysconf only reads a system parameter.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    assert!(
        n > 0 && (n as usize).is_power_of_two(),
        "gstack: sysconf(_SC_PAGESIZE) returned {n}"
    );
    PAGE_SIZE.store(n as usize, Ordering::Relaxed);
    n as usize
}

/// Round `n` up to a multiple of `align` (a power of two); None on overflow.
pub fn round_up(n: usize, align: usize) -> Option<usize> {
    debug_assert!(align.is_power_of_two());
    Some(n.checked_add(align - 1)? & !(align - 1))
}

/// Map `len` bytes (a page multiple) of fresh, zeroed, read-write memory
/// at an address the system chooses. Returns its start, or None if the
/// system refuses.
///
/// Safe to call anywhere: a new mapping never overlaps memory in use.
pub fn map(len: usize) -> Option<usize> {
    debug_assert!(len > 0 && len.is_multiple_of(page_size()));
    anon_rw(len, 0)
}

/// A fresh private anonymous read-write stack mapping of `len` bytes with
/// `flags` added (0 or MAP_NORESERVE), where the kernel chooses; None if
/// it refuses.
fn anon_rw(len: usize, flags: libc::c_int) -> Option<usize> {
    // SAFETY: with a null hint and no MAP_FIXED the kernel picks an unused
    // range, so no existing memory is affected.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK | flags,
            -1,
            0,
        )
    };
    (p != libc::MAP_FAILED).then_some(p as usize)
}

/// Reserve `len` bytes (a page multiple) of address space at an address
/// the system chooses, readable and writable, for memory that is used a
/// part at a time: a page costs memory only once touched, and (except
/// under strict overcommit, vm.overcommit_memory=2) the range costs no
/// commit charge (MAP_NORESERVE). Never backed by huge pages, so a small
/// stack at the top of a large reservation stays small. Returns its start,
/// or None if the system refuses (address space or commit limit).
///
/// Accessible rather than PROT_NONE on purpose: adjacent reservations
/// then merge into one kernel mapping (as adjacent plain mappings do), so
/// thousands of them stay far below the per-process mapping limit
/// (vm.max_map_count); an inaccessible part and a usable part would be
/// two mappings each, never merged.
///
/// Safe to call anywhere: a new mapping never overlaps memory in use.
pub fn reserve(len: usize) -> Option<usize> {
    debug_assert!(len > 0 && len.is_multiple_of(page_size()));
    let p = anon_rw(len, libc::MAP_NORESERVE)?;
    // Recent kernels already keep MAP_STACK mappings off huge pages; older
    // ones need telling. Failure only costs memory, so it is ignored.
    // SAFETY: advice about the mapping just made, which nothing else knows.
    unsafe { libc::madvise(p as *mut libc::c_void, len, libc::MADV_NOHUGEPAGE) };
    Some(p)
}

/// Give the memory behind `[addr, addr + len)`, part of a reservation, back
/// to the system: its pages read as zero again, and cost nothing until
/// touched. Returns false if the system refuses (the memory then stays).
///
/// # Safety
/// The range must be page-aligned and lie within a mapping made by this
/// module that nothing uses; its contents are lost.
pub unsafe fn decommit(addr: usize, len: usize) -> bool {
    // SAFETY: the caller guarantees the range is ours and unused.
    unsafe { libc::madvise(addr as *mut libc::c_void, len, libc::MADV_DONTNEED) == 0 }
}

/// Map `len` bytes whose start is aligned to `align`. Both must be page
/// multiples and `align` a power of two. Maps `len + align` bytes and
/// unmaps the unaligned head and the tail, so what remains is exactly
/// `[start, start + len)`.
pub fn map_aligned(len: usize, align: usize) -> Option<usize> {
    debug_assert!(align.is_power_of_two() && align.is_multiple_of(page_size()));
    let total = len.checked_add(align)?;
    let raw = map(total)?;
    let start = round_up(raw, align)?;
    let head = start - raw;
    let tail = total - head - len;
    // SAFETY: both pieces lie inside the mapping just made, which nothing
    // else knows about, and are page multiples because raw, start, len and
    // align are.
    unsafe {
        if head > 0 {
            unmap(raw, head);
        }
        if tail > 0 {
            unmap(start + len, tail);
        }
    }
    Some(start)
}

/// Unmap `[addr, addr + len)`.
///
/// A failure is a fatal error, not a panic: it means the pool's record of
/// its mappings is wrong (EINVAL) or the kernel cannot split a mapping
/// (ENOMEM at vm.max_map_count), and the callers hold the pool's lock and
/// have already taken the range off their lists -- unwinding from here
/// would leave the accounting half-updated.
///
/// # Safety
/// The range must be page-aligned, lie within mappings made by this module,
/// and nothing may access it again.
pub unsafe fn unmap(addr: usize, len: usize) {
    // SAFETY: the caller guarantees the range is ours and dead.
    if unsafe { libc::munmap(addr as *mut libc::c_void, len) } != 0 {
        crate::fatal::fatal(&format!(
            "stack pool: munmap({addr:#x}, {len}) failed: {} (the pool's mappings are not what it recorded, or the process is at vm.max_map_count)",
            std::io::Error::last_os_error()
        ));
    }
}

/// Make `[addr, addr + len)` inaccessible (PROT_NONE), so that any access
/// faults. Returns false if the system refuses (it can run out of mapping
/// slots, since this splits a mapping in two).
///
/// # Safety
/// The range must be page-aligned, lie within a mapping made by this module,
/// and nothing may rely on accessing it until it is unmapped.
pub unsafe fn protect_none(addr: usize, len: usize) -> bool {
    // SAFETY: the caller guarantees the range is ours and unused.
    unsafe { libc::mprotect(addr as *mut libc::c_void, len, libc::PROT_NONE) == 0 }
}

/// Give the physical memory behind `[addr, addr + len)` back to the system
/// and make the range inaccessible, while keeping the addresses reserved so
/// that they are never handed out again (for GSDEBUG=faultonfree).
///
/// # Safety
/// As for `protect_none`; in addition, the contents of the range are lost.
pub unsafe fn fault_forever(addr: usize, len: usize) {
    // SAFETY: the caller guarantees the range is ours and dead. Dropping its
    // pages first is only an optimisation, so its result does not matter.
    unsafe {
        libc::madvise(addr as *mut libc::c_void, len, libc::MADV_DONTNEED);
    }
    // SAFETY: as above.
    if !unsafe { protect_none(addr, len) } {
        panic!(
            "gstack: mprotect({addr:#x}, {len}, PROT_NONE) failed: {}",
            std::io::Error::last_os_error()
        );
    }
}
