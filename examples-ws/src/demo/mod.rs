//! Demo and benchmark support: not a pattern.
//!
//! What the binaries need beside the patterns: the `ws-load` load
//! generator and its benchmark runs ([`load`], [`bench`](mod@bench)), the flags of
//! the server and the load tool ([`flags`]), and two
//! operating-system facts a server at scale needs ([`os`]). Read
//! `client` and `server` for the patterns.

pub mod bench;
pub mod flags;
pub mod load;
pub mod os;
