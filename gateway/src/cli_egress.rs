//! `warden egress`: what agents need from the egress proxy's side (the interception CA).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;

use warden::egress::intercept::Ca;

#[derive(Subcommand)]
pub enum EgressCommand {
    /// Print the CA certificate (PEM) of TLS interception (egress.intercept): the one agents
    /// must trust for the hosts it intercepts. Warden's own CA is created in
    /// <data_dir>/keys/egress-ca.pem on first use, unless egress.intercept.ca_cert and ca_key
    /// name one.
    Ca {
        /// Write the certificate to this file instead of standard output.
        #[arg(short, long)]
        out: Option<PathBuf>,
        /// Configuration file the gateway runs with: its CA (`egress.intercept.ca_cert`, else
        /// `<data_dir>/keys/egress-ca.pem`). Relative paths in it are taken from the working
        /// directory.
        #[arg(short, long, env = "WARDEN_CONFIG")]
        config: Option<PathBuf>,
    },
}

pub fn egress(command: EgressCommand) -> Result<ExitCode> {
    match command {
        EgressCommand::Ca { out, config } => {
            let config = crate::load(config.as_deref())?;
            let ca = Ca::load_or_create(&config.egress.intercept, &config.data_dir)?;
            match out {
                Some(path) => std::fs::write(&path, ca.cert_pem())
                    .with_context(|| format!("cannot write {}", path.display()))?,
                None => print!("{}", ca.cert_pem()),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
