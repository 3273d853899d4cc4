//! Threads that serve on a single-threaded runtime of their own (the identity service's
//! gRPC threads). A read made on one is batched there (see [`Batcher`]), and its query
//! runs on the runtime its pool was opened on (see [`ReadPool`]).
//!
//! [`Batcher`]: crate::Batcher
//! [`ReadPool`]: crate::ReadPool

use std::cell::Cell;

thread_local! {
    static SERVING: Cell<bool> = const { Cell::new(false) };
}

/// Marks the calling thread as one that runs a single-threaded runtime for as long as it
/// serves: the reads made here are batched by dispatchers of its own, started on its
/// runtime at the first read (a runtime that ends takes them with it: the next read
/// starts new ones on the runtime then current).
pub fn serve_from_this_thread() {
    SERVING.with(|s| s.set(true));
}

/// Whether the calling thread was marked by [`serve_from_this_thread`].
pub(crate) fn serving_thread() -> bool {
    SERVING.with(Cell::get)
}
