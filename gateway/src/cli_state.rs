//! `warden state …`: the state store itself. `migrate` brings its schema up to date and exits,
//! so that a deployment can migrate before any new replica starts (the chart's pre-upgrade
//! Job) rather than in the first one to start.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum StateCommand {
    /// Apply the schema steps the state store lacks, under the lock replicas migrate under,
    /// print each step applied (or that there was nothing to apply) and exit. A store migrated
    /// by a newer Warden is refused. Replicas do the same at start; this does it first.
    Migrate {
        /// Configuration file the gateway runs with: the command migrates its state store
        /// (`state.postgres`, else an existing `<data_dir>/state.db`). Relative paths in it
        /// are taken from the working directory.
        #[arg(short, long, env = "WARDEN_CONFIG")]
        config: Option<PathBuf>,
    },
}

pub fn state(command: StateCommand) -> Result<ExitCode> {
    let StateCommand::Migrate { config } = command;
    let config = super::load(config.as_deref())?;
    super::cli_runtime()?.block_on(async {
        // `open_store` names the store on standard error, once.
        let store = super::open_store(&config).await?;
        for line in store.migrated().lines() {
            println!("{line}");
        }
        Ok(ExitCode::SUCCESS)
    })
}
