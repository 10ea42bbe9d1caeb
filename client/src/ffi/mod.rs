//! The bindings: a C ABI for desktop agents ([`c`], `include/awp_client.h`)
//! and a JNI binding for Android ([`java`], `java/`). Both are thin: they
//! turn their arguments into [`crate::Record`]s and a [`crate::ClientConfig`]
//! (one JSON configuration, [`options`]) and call the same [`crate::Client`];
//! the queue, the batches and the retries stay in the core.

#![allow(unsafe_code)]
// Each entry point's whole body is the unsafe contract stated in its
// `# Safety` (pointers from C or the JVM); marking each deref again adds
// noise, not checking.
#![allow(unsafe_op_in_unsafe_fn)]

pub mod c;
/// cbindgen:ignore
pub mod java;
pub(crate) mod options;

#[cfg(test)]
#[path = "options_test.rs"]
mod options_test;
