//! The entry points managed code calls, under their public names.
//!
//! They are written in assembly (`asm/<arch>.S`, as `<name>_impl`), but a
//! shared library built by rustc exports only symbols defined in Rust.  So
//! each public name is a Rust naked function that tail-jumps to its
//! implementation: no frame, no register touched, so the caller's return
//! address is still on top (x86-64) or in lr (aarch64) when the
//! implementation saves it.  On aarch64 each begins with `bti c` (it is
//! reached by `blr` from C and from JIT code).

macro_rules! export_asm {
    ($($name:ident => $target:literal;)*) => {$(
        #[cfg(target_arch = "x86_64")]
        #[unsafe(naked)]
        #[no_mangle]
        #[doc = concat!("Public name of `", $target, "` (see the module docs).")]
        pub unsafe extern "C" fn $name() {
            core::arch::naked_asm!(concat!("jmp ", $target))
        }

        #[cfg(target_arch = "aarch64")]
        #[unsafe(naked)]
        #[no_mangle]
        #[doc = concat!("Public name of `", $target, "` (see the module docs).")]
        pub unsafe extern "C" fn $name() {
            core::arch::naked_asm!("hint #34", concat!("b ", $target))
        }
    )*};
}

export_asm! {
    gs_morestack => "gs_morestack_impl";
    gs_yield => "gs_yield_impl";
    gs_entersyscall => "gs_entersyscall_impl";
    gs_exitsyscall => "gs_exitsyscall_impl";
    gs_libcall => "gs_libcall_impl";
    gs_chansend => "gs_chansend_impl";
    gs_chanrecv => "gs_chanrecv_impl";
    gs_select => "gs_select_impl";
}
