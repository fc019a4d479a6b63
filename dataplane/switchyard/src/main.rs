//! `switchyard`: the metrics dataplane appliance.
//!
//! Lifecycle: validate (pure) -> build (sinks, control listener, shards bound) -> ready
//! (`READY=1` to systemd) -> run until SIGTERM/SIGINT -> drain (final flush on every shard,
//! sink queues emptied within a deadline) -> exit 0.

mod cli;
mod run;

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
