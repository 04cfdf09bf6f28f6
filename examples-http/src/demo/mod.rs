//! Demo support for the binaries, **not patterns**: the SVG chart, the
//! progress-bar adapter, the sandbox URL sets and the printed stories.
//! Nothing here is meant to be lifted into your code; the patterns are the
//! crate's other modules.

pub mod bench_report;
pub mod chart;
pub mod download_report;
pub mod fetch;
pub mod rate;
