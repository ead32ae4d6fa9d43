//! The boxed future the object-safe async traits return (effects, the store, a run's journal).

use std::future::Future;
use std::pin::Pin;

/// A future on the heap, sendable between threads, borrowing for `'a`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
