//! The process's memory allocator: mimalloc (version 3) instead of the system's (glibc).
//!
//! Ferry's hot paths (a webhook through verification to a durable job, a step through its
//! mapping to a checkpoint) allocate and free many small JSON values on several threads; with
//! glibc's allocator that was a fifth of the CPU time of a busy server. mimalloc takes about a
//! tenth off the CPU time per event and per record (`ferry bench`, docs/engine.md).
//!
//! One option is changed from mimalloc's default: arenas are not committed eagerly. Eager
//! commit costs no CPU worth measuring here but adds about 15 MB to an idle server's resident
//! memory. The option must be set before mimalloc creates its first arena, which happens on the
//! first allocation — before `main` — so its default is set from an ELF constructor that runs ahead of
//! the default ones. `MIMALLOC_ARENA_EAGER_COMMIT` in the environment still wins.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_arena_eager_commit` in mimalloc 3's `mi_option_e`.
#[cfg(target_os = "linux")]
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// Called by the loader before `main` (priority 101: ahead of constructors without one).
#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array.00101"]
static SET_OPTIONS_BEFORE_MAIN: extern "C" fn() = set_options;

#[cfg(target_os = "linux")]
extern "C" fn set_options() {
    // Only the default changes (the environment variable, read when the option is first used,
    // still wins), and nothing is allocated here.
    // SAFETY: `mi_option_set_default` stores an integer in mimalloc's option table unless the
    // option was already initialised; it may be called before mimalloc is initialised.
    unsafe { libmimalloc_sys::mi_option_set_default(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
}
