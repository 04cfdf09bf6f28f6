//! The workspace's guides, compiled.
//!
//! This crate has no code of its own. It includes the Markdown guides in
//! `docs/` as doc-only modules, so that `cargo test --doc -p docs` (and so
//! plain `cargo test`) compiles every Rust snippet in them: a guide that
//! drifts from the APIs it teaches fails the build instead of misleading a
//! reader. Snippets carry hidden set-up lines (`# ` in the Markdown source)
//! for the types and helpers they leave out; a snippet that is wrong on
//! purpose is marked `compile_fail` with the reason beside it.
//!
//! ```text
//! cargo test -p docs --doc
//! ```

#[doc = include_str!("../asyncio-to-tokio.md")]
pub mod asyncio_to_tokio {}

#[doc = include_str!("../testing-async.md")]
pub mod testing_async {}
