//! `ws-load`: fan-out and idle-connection benchmarks for `ws-broadcast-server`.
//!
//! ```text
//! cargo run --release --bin ws-load -- --clients 1000 --count 1000 --runs 3
//! cargo run --release --bin ws-load -- --idle 5000
//! cargo run --release --bin ws-load -- --bus redis://127.0.0.1:6379 --instances 2
//! ```
//!
//! Everything but the story lives in `examples_ws::demo` (demo support):
//! the flags in `demo::flags`, the runs and the child servers in
//! `demo::bench`.

use std::process::ExitCode;

use clap::Parser;
use common::{Example, Report};
use examples_ws::demo::{bench, flags::LoadFlags};
use tokio_util::sync::CancellationToken;

/// Load generator for ws-broadcast-server. Fan-out: --clients subscribers on
/// one channel, one publisher sends --count messages as fast as it can;
/// reports deliveries/s (median of --runs). --idle N instead holds N idle
/// connections for --duration and reports the server's RSS. Without --url it
/// starts ws-broadcast-server (next to this binary) as child processes on
/// free ports, and stops them on exit or Ctrl-C; with --bus and --instances
/// N it starts N instances joined by Redis, spreads the clients over them,
/// and reports one plain instance's figure beside theirs.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    load: LoadFlags,
    #[command(flatten)]
    output: common::OutputArgs,
}

impl Example for Args {
    const NAME: &'static str = "ws-load";
    const SEED: Option<u8> = Some(5);
    const TOOL: bool = true;
    fn output(&self) -> &common::OutputArgs {
        &self.output
    }
}

fn main() -> ExitCode {
    common::driver::main(run)
}

async fn run(args: Args, stop: CancellationToken) -> anyhow::Result<Report> {
    if let Err(err) = examples_ws::demo::os::raise_open_files_limit() {
        tracing::warn!("cannot raise the open files limit: {err}");
    }
    let json = args.output.json;
    let say = move |line: String| {
        if !json {
            println!("{line}");
        }
    };
    bench::run(&args.load, &stop, &say).await
}
