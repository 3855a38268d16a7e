//! Keeps the library silent: a panic on a worker thread or inside a C API call
//! is caught and reported through the error log, so the default hook must not
//! also print it to stderr. Panics elsewhere go to the previous hook unchanged.

use std::cell::Cell;
use std::sync::Once;

thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Marks the current thread as inside the library while `f` runs.
pub(crate) fn quietly<R>(f: impl FnOnce() -> R) -> R {
    install();
    // One thread-local lookup: the guard keeps the cell (a library built as a
    // shared object pays a `__tls_get_addr` call per lookup).
    DEPTH.with(|depth| {
        depth.set(depth.get() + 1);
        struct Leave<'a>(&'a Cell<u32>);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.set(self.0.get().saturating_sub(1));
            }
        }
        let _leave = Leave(depth);
        f()
    })
}

fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if DEPTH.with(|d| d.get()) == 0 {
                previous(info);
            }
        }));
    });
}
